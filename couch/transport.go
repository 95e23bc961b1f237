package couch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-kivik/kivik/v4/couchdb/chttp"
)

// errTooLarge is returned by a capped body once more than the cap has been read.
var errTooLarge = errors.New("reply body over the size cap")

// errRedirect is a 3xx reply: CouchDB does not redirect the calls couchwatch makes, so
// something in between does, and a session cookie is not sent after it.
var errRedirect = errors.New("redirected (not followed)")

// guard is the RoundTripper under every call of a Node (ours, kivik's, the login): it
// turns a 3xx into an error and caps the body at max bytes, at once when Content-Length
// says so, otherwise when reading passes the cap. (The status line and headers are
// capped by the transport's MaxResponseHeaderBytes.)
type guard struct {
	base http.RoundTripper
	max  int64
}

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := g.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if u, err := url.Parse(loc); err == nil {
			loc = u.Redacted()
		}
		return nil, &Error{Reason: ReasonRedirect, Status: resp.StatusCode, Err: fmt.Errorf("%w: to %.100q", errRedirect, loc)}
	}
	if resp.ContentLength > g.max {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: Content-Length %d > %d", errTooLarge, resp.ContentLength, g.max)
	}
	resp.Body = &cappedBody{rc: resp.Body, left: g.max}
	return resp, nil
}

type cappedBody struct {
	rc   io.ReadCloser
	left int64 // bytes still allowed
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n - 1, errTooLarge // hand out at most the cap
	}
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }

// newTransport is a Node's transport: no proxy from the environment, HTTP/1.1 (what
// CouchDB speaks), no compression (a small reply gains nothing, and the body cap then
// counts the bytes on the wire), headers capped at MaxHeaderBytes. keep = 0 disables
// keep-alive (every call on a new connection).
func newTransport(tlsConf *tls.Config, dial func(ctx context.Context, network, addr string) (net.Conn, error), keep int) *http.Transport {
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            dial,
		MaxIdleConns:           keep,
		MaxIdleConnsPerHost:    keep,
		DisableKeepAlives:      keep == 0,
		IdleConnTimeout:        defaultIdleConnTimeout,
		TLSClientConfig:        tlsConf,
		TLSHandshakeTimeout:    DefaultTimeout,
		MaxResponseHeaderBytes: MaxHeaderBytes,
		DisableCompression:     true,
		ForceAttemptHTTP2:      false,
		ReadBufferSize:         2 << 10,
		WriteBufferSize:        1 << 10,
	}
}

// connWatch learns when the node closes or resets one of the connections it watches
// (the /_up transport's kept-alive connection). net/http's transport keeps a read
// parked on every idle connection, so the close is seen the moment it arrives, with no
// goroutine or connection of our own.
type connWatch struct {
	ch     chan struct{} // one pending signal at most
	dialer net.Dialer
}

func newConnWatch() *connWatch {
	return &connWatch{ch: make(chan struct{}, 1), dialer: net.Dialer{KeepAlive: defaultKeepAlive}}
}

func (w *connWatch) signal() {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

// clear drops a pending signal.
func (w *connWatch) clear() {
	select {
	case <-w.ch:
	default:
	}
}

// dial is the watched transport's DialContext.
func (w *connWatch) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := w.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &watchedConn{Conn: c, w: w}, nil
}

// dialTLS is the watched transport's DialTLSContext: the watch sits above TLS, where
// a close_notify from the node shows as the end of the stream.
func (w *connWatch) dialTLS(conf *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := w.dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(c, conf)
		hctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
		if err := tc.HandshakeContext(hctx); err != nil {
			_ = c.Close()
			return nil, err
		}
		return &watchedConn{Conn: tc, w: w}, nil
	}
}

// watchedConn reports a read error that we did not cause by closing it ourselves (the
// transport closes a connection on a cancelled call, an idle timeout, CloseIdle): the
// node closed or reset it.
type watchedConn struct {
	net.Conn
	w      *connWatch
	ours   atomic.Bool
	closed atomic.Bool
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && !c.ours.Load() && c.closed.CompareAndSwap(false, true) {
		c.w.signal()
	}
	return n, err
}

func (c *watchedConn) Close() error {
	c.ours.Store(true)
	return c.Conn.Close()
}

// wait waits up to d for a close and reports whether one came; false at once when ctx ends.
func (w *connWatch) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.ch:
		return true
	case <-ctx.Done():
	case <-t.C:
	}
	return false
}

// classify maps a failed call's error (from net/http, from our transports or from
// kivik) to a Reason and, when a reply was received, its HTTP status.
func classify(err error) (Reason, int) {
	var (
		ce    *Error
		he    *chttp.HTTPError
		syn   *json.SyntaxError
		typ   *json.UnmarshalTypeError
		ne    net.Error
		dns   *net.DNSError
		rec   tls.RecordHeaderError
		alert tls.AlertError
		cv    *tls.CertificateVerificationError
		ua    x509.UnknownAuthorityError
		hn    x509.HostnameError
		ci    x509.CertificateInvalidError
		pe    *textproto.Error
		tpe   textproto.ProtocolError
	)
	switch {
	case errors.As(err, &ce):
		return ce.Reason, ce.Status
	case errors.Is(err, errTooLarge), strings.Contains(err.Error(), "server response headers exceeded"):
		return ReasonTooLarge, 0
	case errors.As(err, &he) && he.Response != nil:
		return reasonForStatus(he.Response.StatusCode), he.Response.StatusCode
	case errors.As(err, &dns):
		if dns.IsTimeout {
			return ReasonTimeout, 0
		}
		return ReasonDNS, 0
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return ReasonTimeout, 0
	case errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &hn), errors.As(err, &ci), errors.As(err, &alert):
		return ReasonTLS, 0
	case errors.As(err, &rec), errors.As(err, &pe), errors.As(err, &tpe):
		return ReasonProtocol, 0
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED), errors.Is(err, io.EOF):
		return ReasonRefused, 0
	case errors.As(err, &syn), errors.As(err, &typ), errors.Is(err, io.ErrUnexpectedEOF):
		return ReasonMalformed, 0
	case isHTTPProtocolError(err):
		return ReasonProtocol, 0
	}
	return ReasonOther, 0
}

// isHTTPProtocolError reports net/http's errors for a reply that breaks HTTP/1.x: they
// are plain strings (http.ReadResponse's "malformed HTTP ...", Content-Length and
// Transfer-Encoding complaints, a connection broken by what it read). classify asks
// only after every other reason (a broken connection's EOF is refused, not this).
func isHTTPProtocolError(err error) bool {
	s := err.Error()
	for _, m := range []string{"malformed", "transport connection broken", "Content-Length", "Transfer-Encoding",
		"transfer encoding", "chunk", "trailer", "MIME header"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// stripURL drops the *url.Error layer (method and URL): the *Error already names the
// operation and node, and a URL is never something to print next to a credential.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}
