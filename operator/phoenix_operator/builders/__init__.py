"""Pure builders, one module per child kind: typed spec in → Kubernetes object dict out."""
