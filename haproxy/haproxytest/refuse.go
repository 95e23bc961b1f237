package haproxytest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// RefusingSocket is an admin socket in front of p's that makes HAProxy itself refuse
// chosen commands: refuse is called with the index (counted from 0 over every
// connection) and text of each "set server"/"shutdown" command, and a refused one is
// sent to HAProxy naming a server that does not exist, so HAProxy answers it with its
// own error ("No such server."). Everything else passes through unchanged. It returns
// the socket's path; the listener closes in t.Cleanup.
func (p *Proc) RefusingSocket(t testing.TB, refuse func(i int, cmd string) bool) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "refusing.sock")
	ln, err := p.Refusing(path, refuse)
	if err != nil {
		t.Fatalf("haproxytest: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return path
}

// Refusing is RefusingSocket for code without a testing.TB: it listens on path until
// the returned listener is closed.
func (p *Proc) Refusing(path string, refuse func(i int, cmd string) bool) (net.Listener, error) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("refusing socket: %w", err)
	}
	var mu sync.Mutex
	n := 0
	rewrite := func(line string) string {
		mu.Lock()
		defer mu.Unlock()
		cmds := strings.Split(strings.TrimRight(line, "\n"), ";")
		for i, c := range cmds {
			if !strings.HasPrefix(c, "set server ") && !strings.HasPrefix(c, "shutdown sessions ") {
				continue
			}
			if refuse(n, c) {
				f := strings.Fields(c)
				for j, w := range f {
					if strings.Contains(w, "/") {
						f[j] = w + "-refused-by-test"
					}
				}
				cmds[i] = strings.Join(f, " ")
			}
			n++
		}
		return strings.Join(cmds, ";") + "\n"
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.relay(c, rewrite)
		}
	}()
	return ln, nil
}

// relay forwards one request line, rewritten, to HAProxy's socket and the reply back.
func (p *Proc) relay(c net.Conn, rewrite func(string) string) {
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return
	}
	up, err := net.Dial("unix", p.sock)
	if err != nil {
		return
	}
	defer up.Close()
	if _, err := io.WriteString(up, rewrite(line)); err != nil {
		return
	}
	_, _ = io.Copy(c, up)
}
