package couch

import (
	"bufio"
	"context"
	"net"
	"net/url"
	"slices"
	"testing"
	"time"
)

// FuzzReadReply feeds arbitrary bytes as a node's reply to /_up through the real
// transport (net/http with the header cap, the guard, the parser): never a panic, and
// every failure carries one of the bounded reasons.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}",
		"HTTP/1.1 404 Object Not Found\r\nContent-Length: 19\r\n\r\n{\"status\":\"nolb\"}\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"sta\r\na\r\ntus\":\"ok\"}\r\n0\r\n\r\n",
		"HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}",
		"HTTP/1.0 200 OK\r\n\r\n{\"status\":\"ok\"}",
		"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}",
		"\x15\x03\x01\x00\x02\x02\x46",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	known := Reasons()
	f.Fuzz(func(t *testing.T, reply []byte) {
		n, err := NewNode(Target{Name: "fuzz", URL: &url.URL{Scheme: "http", Host: "fuzz.invalid:5984"}},
			Options{Timeout: time.Second, MaxBody: 4096})
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		n.transports[0].DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			client, server := net.Pipe()
			go func() {
				defer server.Close()
				br := bufio.NewReader(server)
				for {
					line, err := br.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				_ = server.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = server.Write(reply)
			}()
			return client, nil
		}
		_, err = n.Up(context.Background())
		if err != nil && (!slices.Contains(known, Classify(err)) || Classify(err) == ReasonOther) {
			t.Fatalf("reason %q not in the bounded set: %v", Classify(err), err)
		}
	})
}
