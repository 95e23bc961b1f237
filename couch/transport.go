package couch

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"

	"github.com/go-kivik/kivik/v4/couchdb/chttp"
)

// errTooLarge is returned by a capped body once more than the cap has been read.
var errTooLarge = errors.New("reply body over the size cap")

// capTransport refuses bodies over max bytes: at once when Content-Length says so,
// otherwise when reading passes the cap.
type capTransport struct {
	base http.RoundTripper
	max  int64
}

func (t *capTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: Content-Length %d > %d", errTooLarge, resp.ContentLength, t.max)
	}
	resp.Body = &cappedBody{rc: resp.Body, left: t.max}
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

// newTransport is the default transport of a Node: keep-alive, no proxy from the
// environment, HTTP/1.1 (what CouchDB speaks).
func newTransport(tlsConf *tls.Config) *http.Transport {
	d := &net.Dialer{KeepAlive: defaultKeepAlive}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		MaxIdleConns:          2,
		MaxIdleConnsPerHost:   1,
		IdleConnTimeout:       defaultIdleConnTimeout,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   DefaultTimeout,
		ResponseHeaderTimeout: 0, // the per-call context is the deadline
		ForceAttemptHTTP2:     false,
	}
}

// classify maps a failed call's error (from net/http, from our transports or from
// kivik) to a Reason and, when a reply was received, its HTTP status.
func classify(err error) (Reason, int) {
	var ce *Error
	var he *chttp.HTTPError
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		return ce.Reason, ce.Status
	case errors.Is(err, errTooLarge):
		return ReasonTooLarge, 0
	case errors.As(err, &he) && he.Response != nil:
		return reasonForStatus(he.Response.StatusCode), he.Response.StatusCode
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return ReasonTimeout, 0
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED), errors.Is(err, io.EOF):
		return ReasonRefused, 0
	case errors.As(err, &syn), errors.As(err, &typ), errors.Is(err, io.ErrUnexpectedEOF):
		return ReasonMalformed, 0
	}
	return ReasonOther, 0
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
