// Command probe is the real-node tests' container image: one static binary, no shell, that
// serves HTTP and checks the pod's network from inside (DNS, TCP, HTTPS to the API server) and
// reads files (cgroup limits), so each test asks it one precise question with `kubectl exec`.
//
//	probe serve PORT          HTTP: "probe <hostname>" on every path
//	probe lookup NAME         print NAME's addresses, one per line
//	probe dial HOST:PORT      connect, print the first line the server sends
//	probe get URL             HTTP(S) GET with the pod's ServiceAccount token and CA; print status and body
//	probe cat FILE            print a file
//	probe echo TEXT...        print TEXT to stdout (for kubectl logs), then wait for SIGTERM
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func main() {
	if len(os.Args) < 2 {
		fail("usage: probe serve|lookup|dial|get|cat|echo ARG")
	}
	arg := strings.Join(os.Args[2:], " ")
	switch os.Args[1] {
	case "serve":
		host, _ := os.Hostname()
		fmt.Println("serving on :" + arg)
		http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintf(w, "probe %s\n", host) })
		fail(http.ListenAndServe(":"+arg, nil))
	case "lookup":
		addrs, err := net.LookupHost(arg)
		if err != nil {
			fail(err)
		}
		fmt.Println(strings.Join(addrs, "\n"))
	case "dial":
		conn, err := net.DialTimeout("tcp", arg, 5*time.Second)
		if err != nil {
			fail(err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil && line == "" {
			fail(err)
		}
		fmt.Print(line)
	case "get":
		get(arg)
	case "cat":
		data, err := os.ReadFile(arg)
		if err != nil {
			fail(err)
		}
		os.Stdout.Write(data)
	case "echo":
		fmt.Println(arg)
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
		<-stop
	default:
		fail("unknown subcommand " + os.Args[1])
	}
}

func get(url string) {
	pool := x509.NewCertPool()
	if ca, err := os.ReadFile(saDir + "/ca.crt"); err == nil {
		pool.AppendCertsFromPEM(ca)
	}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		fail(err)
	}
	if token, err := os.ReadFile(saDir + "/token"); err == nil {
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	}
	resp, err := client.Do(req)
	if err != nil {
		fail(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("%d\n%s\n", resp.StatusCode, body)
}

func fail(v any) {
	fmt.Fprintln(os.Stderr, "probe:", v)
	os.Exit(1)
}
