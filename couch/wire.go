package couch

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// wire is the Node's own HTTP/1.1 client for its small GETs (/_up, /_system, ...). At
// 300 nodes couchwatch sends ~800 of them a second, and net/http's per-request cost
// (two goroutines and a channel handoff per connection, header maps, a context timer)
// was most of couchwatch's CPU. wire writes one fixed request and reads the reply on
// the caller's goroutine; a connection is used by one call at a time.
//
// One connection is reserved for /_up: between probes Watch parks a read on it, so a
// crash (the peer's kernel closing the connection) is seen at once, with no extra
// connection or goroutine per node.
type wire struct {
	addr   string      // host:port to dial
	host   string      // Host header
	tls    *tls.Config // nil: plain HTTP
	dialer net.Dialer
	sess   *session // nil: no auth
	max    int64

	held atomic.Pointer[wconn] // the /_up connection, when idle

	mu   sync.Mutex
	idle []*wconn // other idle keep-alive connections, at most maxIdle
}

// maxIdle bounds the idle connections kept besides the held one: the load sampler and
// the membership pass may overlap.
const maxIdle = 2

// readBuf is each connection's read buffer: a /_up reply with its headers fits.
const readBuf = 1024

type wconn struct {
	nc   net.Conn
	br   *bufio.Reader
	req  []byte // request bytes, reused
	used bool   // has served a reply: the peer may have closed it since
}

func (c *wconn) close() { _ = c.nc.Close() }

// aLongTimeAgo is a deadline in the past: it wakes a blocked read or write at once.
var aLongTimeAgo = time.Unix(1, 0)

func (w *wire) dial(ctx context.Context) (*wconn, error) {
	nc, err := w.dialer.DialContext(ctx, "tcp", w.addr)
	if err != nil {
		return nil, err
	}
	if w.tls != nil {
		tc := tls.Client(nc, w.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, err
		}
		nc = tc
	}
	return &wconn{nc: nc, br: bufio.NewReaderSize(nc, readBuf)}, nil
}

// take returns an idle connection (the held one first when up is set) or a new one.
func (w *wire) take(ctx context.Context, up bool) (*wconn, error) {
	if up {
		if c := w.held.Swap(nil); c != nil {
			return c, nil
		}
	}
	w.mu.Lock()
	if n := len(w.idle); n > 0 {
		c := w.idle[n-1]
		w.idle = w.idle[:n-1]
		w.mu.Unlock()
		return c, nil
	}
	w.mu.Unlock()
	return w.dial(ctx)
}

// put keeps c for the next call, or closes it when enough are kept.
func (w *wire) put(c *wconn, up bool) {
	if up && w.held.CompareAndSwap(nil, c) {
		return
	}
	w.mu.Lock()
	if len(w.idle) < maxIdle {
		w.idle = append(w.idle, c)
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	c.close()
}

// closeIdle closes every idle connection.
func (w *wire) closeIdle() {
	if c := w.held.Swap(nil); c != nil {
		c.close()
	}
	w.mu.Lock()
	idle := w.idle
	w.idle = nil
	w.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// get sends GET path and returns the status and the whole (capped) body. A keep-alive
// connection the node closed while idle is retried once on a new one; a 401 with a
// session logs in again, once, and retries.
func (w *wire) get(ctx context.Context, path string, up bool) (int, []byte, error) {
	var cookie string
	var gen uint64
	if w.sess != nil {
		var err error
		if cookie, gen, err = w.sess.current(ctx); err != nil {
			return 0, nil, err
		}
	}
	for relogged := false; ; relogged = true {
		rep, err := w.do(ctx, wreq{method: http.MethodGet, path: path, cookie: cookie}, up)
		if err != nil {
			return 0, nil, err
		}
		if rep.status == http.StatusUnauthorized && w.sess != nil && !relogged {
			if cookie, gen, err = w.sess.login(ctx, gen); err != nil {
				return 0, nil, err
			}
			continue
		}
		if w.sess != nil && rep.status < 300 && rep.cookie != "" {
			w.sess.keep(rep.cookie) // CouchDB re-issues the cookie part-way through its life
		}
		return rep.status, rep.body, nil
	}
}

// wreq is one request; body is sent as JSON when set.
type wreq struct {
	method, path, cookie string
	body                 []byte
}

// wrep is one reply; cookie is the AuthSession value it set, if any.
type wrep struct {
	status int
	body   []byte
	cookie string
}

// do sends req on an idle connection (the held one first when up is set) or a new one.
// A kept-alive connection the node closed while idle is retried once on a new one:
// every request sent this way is idempotent, or (the login) fails harmlessly.
func (w *wire) do(ctx context.Context, req wreq, up bool) (wrep, error) {
	for redialled := false; ; redialled = true {
		c, err := w.take(ctx, up)
		if err != nil {
			return wrep{}, err
		}
		rep, keep, err := w.exchange(ctx, c, req)
		if err != nil {
			stale := c.used && errors.Is(err, errStale)
			c.close()
			if stale && !redialled && ctx.Err() == nil {
				continue
			}
			return wrep{}, err
		}
		c.used = true
		if keep {
			w.put(c, up)
		} else {
			c.close()
		}
		return rep, nil
	}
}

// errStale marks a connection that failed before any byte of the reply arrived.
var errStale = errors.New("connection closed before the reply")

// exchange sends one request on c and reads its reply. keep reports whether c may be
// used again. Any error leaves c unusable.
func (w *wire) exchange(ctx context.Context, c *wconn, req wreq) (rep wrep, keep bool, err error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.nc.SetDeadline(dl)
	} else {
		_ = c.nc.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(aLongTimeAgo) })
	defer stop()
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = ctx.Err()
		}
	}()

	c.req = appendRequest(c.req[:0], w.host, req)
	_, err = c.nc.Write(c.req)
	if req.body != nil {
		clear(c.req) // the login body holds the password: do not leave a copy behind
	}
	if err != nil {
		return wrep{}, false, stale(err)
	}
	if _, err := c.br.Peek(1); err != nil {
		return wrep{}, false, stale(err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return wrep{}, false, err
	}
	defer resp.Body.Close()
	body, err := readBody(resp, w.max)
	if err != nil {
		return wrep{}, false, err
	}
	return wrep{status: resp.StatusCode, body: body, cookie: authCookie(resp)}, !resp.Close, nil
}

// readBody reads the whole body, at most max bytes: in one allocation when the length
// is announced.
func readBody(resp *http.Response, max int64) ([]byte, error) {
	n := resp.ContentLength
	if n > max {
		return nil, fmt.Errorf("%w: Content-Length %d > %d", errTooLarge, n, max)
	}
	if n >= 0 {
		body := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, body); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		return body, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > max {
		return nil, errTooLarge
	}
	return body, nil
}

// stale marks err as a connection closed or reset before any reply: on a reused
// connection that is the node's idle close, not a failure of the node.
func stale(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("%w: %w", errStale, err)
	}
	return err
}

func appendRequest(b []byte, host string, req wreq) []byte {
	b = append(b, req.method...)
	b = append(b, ' ')
	b = append(b, req.path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nUser-Agent: "+userAgent+"\r\nAccept: application/json\r\n"...)
	if req.cookie != "" {
		b = append(b, "Cookie: "+sessionCookie+"="...)
		b = append(b, req.cookie...)
		b = append(b, "\r\n"...)
	}
	if req.body != nil {
		b = append(b, "Content-Type: application/json\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(req.body)), 10)
		b = append(b, "\r\n\r\n"...)
		return append(b, req.body...)
	}
	return append(b, "\r\n"...)
}

// watch holds the /_up connection idle for up to d and reports whether the node
// closed it meanwhile (a crash, or the node's own idle close: the caller probes again
// to tell). Without a connection to hold it dials one first; when that fails it just
// waits. It returns early, with false, when ctx ends.
func (w *wire) watch(ctx context.Context, d time.Duration, timeout time.Duration) bool {
	deadline := time.Now().Add(d)
	c := w.held.Swap(nil)
	if c == nil {
		dctx, cancel := context.WithDeadline(ctx, time.Now().Add(min(d, timeout)))
		var err error
		c, err = w.dial(dctx)
		cancel()
		if err != nil {
			sleepUntil(ctx, deadline)
			return false
		}
	}
	_ = c.nc.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetReadDeadline(aLongTimeAgo) })
	_, err := c.br.Peek(1)
	stop()
	var ne net.Error
	switch {
	case err == nil:
		c.close() // bytes on an idle connection: CouchDB never speaks first, so it is out of step
		return true
	case errors.As(err, &ne) && ne.Timeout():
		// The usual end: d passed (or ctx ended) with the connection still open.
		c.used = true // idle for a while: the node may close it before the next call
		if !w.held.CompareAndSwap(nil, c) {
			c.close()
		}
		return false
	}
	c.close()
	return ctx.Err() == nil
}

// sleepUntil waits until t or until ctx ends.
func sleepUntil(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
	case <-tm.C:
	}
}

// hostHeader is the Host header for a base URL host: the port is dropped when it is
// the scheme's default, as net/http does.
func hostHeader(scheme, hostport string) string {
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	if (scheme == "http" && p == "80") || (scheme == "https" && p == "443") {
		if strings.Contains(h, ":") {
			return "[" + h + "]"
		}
		return h
	}
	return hostport
}
