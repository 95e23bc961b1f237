package couch

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	kivik "github.com/go-kivik/kivik/v4"
	"github.com/go-kivik/kivik/v4/couchdb"
)

const (
	defaultKeepAlive       = 15 * time.Second
	defaultIdleConnTimeout = 60 * time.Second // probes come every few seconds at most
	userAgent              = "couchwatch"
)

// Options configure a Node.
type Options struct {
	// User and Password log in with POST /_session; empty User sends no auth at all.
	User, Password string
	// Timeout is the deadline of each call when ctx has none sooner; 0 = DefaultTimeout.
	Timeout time.Duration
	// MaxBody caps every reply body; 0 = DefaultMaxBody.
	MaxBody int64
	// TLS configures https targets (trusted roots, client certificates); nil uses the
	// system's roots. ServerName defaults to the target's host.
	TLS *tls.Config
}

// Node is a client for one CouchDB node. It is safe for concurrent use.
//
// Three transports (net/http), each under the same guard and session: the /_up probe's,
// whose one kept-alive connection is watched (Watch, Closed); one for a /_up probe on a
// new connection (UpFresh); and one for everything else, kivik's calls and the login
// included.
type Node struct {
	name    string
	base    *url.URL
	timeout time.Duration
	secrets *redactor
	watch   *connWatch

	up, fresh, other http.RoundTripper
	anon             http.RoundTripper // fresh, without credentials (Knock)
	transports       []*http.Transport
	kivik            *kivik.Client
}

// NewNode returns a client for t. It does no I/O: the first call logs in.
func NewNode(t Target, opt Options) (*Node, error) {
	switch {
	case t.URL == nil:
		return nil, fmt.Errorf("node %q: no URL", t.Name)
	case t.URL.User != nil:
		return nil, fmt.Errorf("node %q: credentials in the URL are not allowed", t.Name)
	case t.URL.Scheme != "http" && t.URL.Scheme != "https":
		return nil, fmt.Errorf("node %q: scheme %q: want http or https", t.Name, t.URL.Scheme)
	case t.URL.Host == "":
		return nil, fmt.Errorf("node %q: no host", t.Name)
	case opt.Timeout < 0:
		return nil, fmt.Errorf("node %q: negative timeout %v", t.Name, opt.Timeout)
	case opt.MaxBody < 0:
		return nil, fmt.Errorf("node %q: negative body cap %d", t.Name, opt.MaxBody)
	case opt.User == "" && opt.Password != "":
		return nil, fmt.Errorf("node %q: a password without a user", t.Name)
	}
	if opt.Timeout == 0 {
		opt.Timeout = DefaultTimeout
	}
	if opt.MaxBody == 0 {
		opt.MaxBody = DefaultMaxBody
	}
	base := &url.URL{Scheme: t.URL.Scheme, Host: t.URL.Host}
	if t.URL.Port() == "" {
		base.Host = net.JoinHostPort(t.URL.Hostname(), strconv.Itoa(DefaultPort))
	}
	name := t.Name
	if name == "" {
		name = base.Host
	}
	var tlsConf *tls.Config
	if base.Scheme == "https" {
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
		if opt.TLS != nil {
			tlsConf = opt.TLS.Clone()
		}
		if tlsConf.ServerName == "" {
			tlsConf.ServerName = base.Hostname()
		}
	}
	n := &Node{name: name, base: base, timeout: opt.Timeout, secrets: newRedactor(opt.Password), watch: newConnWatch()}
	plain := &net.Dialer{KeepAlive: defaultKeepAlive}
	upT := newTransport(tlsConf, n.watch.dial, 1)
	if tlsConf != nil {
		upT.DialTLSContext = n.watch.dialTLS(tlsConf)
	}
	freshT := newTransport(tlsConf, plain.DialContext, 0)
	otherT := newTransport(tlsConf, plain.DialContext, 2)
	n.transports = []*http.Transport{upT, freshT, otherT}
	n.up, n.fresh, n.other = &guard{upT, opt.MaxBody}, &guard{freshT, opt.MaxBody}, &guard{otherT, opt.MaxBody}
	n.anon = n.fresh
	if opt.User != "" {
		s, err := newSession(n.other, base.String(), name, opt.User, opt.Password, opt.Timeout, n.secrets)
		if err != nil {
			return nil, fmt.Errorf("node %q: %w", name, err)
		}
		n.up, n.fresh, n.other = &authRT{s, n.up}, &authRT{s, n.fresh}, &authRT{s, n.other}
	}
	client := &http.Client{Transport: n.other} // the guard refuses redirects
	kc, err := kivik.New("couch", base.String(), couchdb.OptionHTTPClient(client), couchdb.OptionUserAgent(userAgent))
	if err != nil {
		return nil, fmt.Errorf("node %q: kivik client: %w", name, stripURL(err))
	}
	n.kivik = kc
	return n, nil
}

// Name returns the target's name (as written in COUCHDB_SERVERS).
func (n *Node) Name() string { return n.name }

// URL returns a copy of the node's base URL; it never holds credentials.
func (n *Node) URL() *url.URL {
	u := *n.base
	return &u
}

// Up asks GET /_up on the node's kept-alive probe connection (the one Watch watches).
// A 404 maintenance reply (maintenance_mode, nolb, seeding) is a successful call:
// check Up.Status.
func (n *Node) Up(ctx context.Context) (Up, error) {
	n.watch.clear() // a close seen before this probe is this probe's to find
	return n.upOn(ctx, n.up)
}

// UpFresh asks GET /_up on a new connection, closed afterwards: a second opinion that
// owes nothing to the kept-alive connection (a refused connect right after a reset is
// two independent failures).
func (n *Node) UpFresh(ctx context.Context) (Up, error) { return n.upOn(ctx, n.fresh) }

func (n *Node) upOn(ctx context.Context, rt http.RoundTripper) (Up, error) {
	const op = "up"
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	status, body, err := n.get(ctx, rt, "/_up")
	if err != nil {
		return Up{}, n.fail(op, err)
	}
	up, err := parseUp(status, body)
	if err != nil {
		return Up{}, n.fail(op, err)
	}
	return up, nil
}

// Membership asks GET /_membership (through kivik).
func (n *Node) Membership(ctx context.Context) (Membership, error) {
	const op = "membership"
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	km, err := n.kivik.Membership(ctx)
	if err != nil {
		return Membership{}, n.fail(op, err)
	}
	m := Membership{AllNodes: km.AllNodes, ClusterNodes: km.ClusterNodes}
	if err := checkMembership(m); err != nil {
		return Membership{}, n.fail(op, err)
	}
	return m, nil
}

// LocalName asks GET /_node/_local and returns the Erlang node name
// ("couchdb1@127.0.0.1").
func (n *Node) LocalName(ctx context.Context) (string, error) {
	const op = "local_name"
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	body, err := n.getOK(ctx, op, "/_node/_local")
	if err != nil {
		return "", err
	}
	var reply struct {
		Name string `json:"name"`
	}
	if err := decodeStrict(bytes.NewReader(body), &reply); err != nil {
		return "", n.fail(op, malformed(op, err))
	}
	if reply.Name == "" {
		return "", n.fail(op, malformed(op, errors.New(`no "name" field`)))
	}
	return reply.Name, nil
}

// System asks GET /_node/_local/_system: always the answering node's own figures,
// never a peer's (a peer's are proxied and block while that peer hangs).
func (n *Node) System(ctx context.Context) (System, error) {
	const op = "system"
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	body, err := n.getOK(ctx, op, "/_node/_local/_system")
	if err != nil {
		return System{}, err
	}
	s, err := parseSystem(body)
	if err != nil {
		return System{}, n.fail(op, err)
	}
	return s, nil
}

// ActiveTasks asks GET /_active_tasks.
func (n *Node) ActiveTasks(ctx context.Context) ([]ActiveTask, error) {
	const op = "active_tasks"
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	body, err := n.getOK(ctx, op, "/_active_tasks")
	if err != nil {
		return nil, err
	}
	tasks, err := ParseActiveTasks(bytes.NewReader(body))
	if err != nil {
		return nil, n.fail(op, err)
	}
	return tasks, nil
}

// ConfigValue asks GET /_node/_local/_config/<section>/<key> (through kivik) and
// returns the decoded JSON string. A missing key is an *Error with ReasonHTTP4xx and
// Status 404.
func (n *Node) ConfigValue(ctx context.Context, section, key string) (string, error) {
	const op = "config"
	if section == "" || key == "" {
		return "", &Error{Op: op, Node: n.name, Reason: ReasonOther, Err: errors.New("empty section or key")}
	}
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	v, err := n.kivik.ConfigValue(ctx, "_local", section, key)
	if err != nil {
		return "", n.fail(op, err)
	}
	return v, nil
}

// Watch waits up to d for the node to close or reset the /_up probe's kept-alive
// connection, and reports whether it did. A crashed CouchDB's kernel closes its
// connections at once, so a caller that watches between probes learns of a crash
// within milliseconds and can probe again. A healthy node's idle close looks the same:
// the probe tells them apart. Without a connection (none yet, or the last probe
// failed) it just waits out d. It returns false at once when ctx ends.
func (n *Node) Watch(ctx context.Context, d time.Duration) bool { return n.watch.wait(ctx, d) }

// Closed receives a value when the node closes or resets the /_up probe's kept-alive
// connection (one pending value at most; Up drops a pending one). Watch waits on it;
// a caller with its own select can use it instead.
func (n *Node) Closed() <-chan struct{} { return n.watch.ch }

// Close closes the node's idle connections.
func (n *Node) Close() {
	for _, t := range n.transports {
		t.CloseIdleConnections()
	}
}

// withDeadline bounds ctx by the node timeout (the sooner deadline wins).
func (n *Node) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, n.timeout)
}

// get sends GET path over rt and returns the status and the whole (capped) body.
func (n *Node) get(ctx context.Context, rt http.RoundTripper, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.base.String()+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		if r, _ := classify(err); r == ReasonOther {
			// The framing of the body broke (chunking, trailers): not HTTP as it should be.
			return 0, nil, &Error{Reason: ReasonProtocol, Status: resp.StatusCode, Err: err}
		}
		return 0, nil, err
	}
	return resp.StatusCode, body, nil
}

// getOK is get on the shared transport for calls where only 200 is a success.
func (n *Node) getOK(ctx context.Context, op, path string) ([]byte, error) {
	status, body, err := n.get(ctx, n.other, path)
	if err != nil {
		return nil, n.fail(op, err)
	}
	if status != http.StatusOK {
		return nil, n.fail(op, statusError(op, status, body, true))
	}
	return body, nil
}

// fail wraps err into an *Error for op with its Reason. Its text is redacted: no
// password or session cookie survives, even one the server quoted back.
func (n *Node) fail(op string, err error) *Error {
	var ce *Error
	if errors.As(err, &ce) && (ce.Node == "" || ce.Node == n.name) {
		e := *ce
		inner := ce.Err
		if ce.Op != op && ce.Op != "" {
			inner = fmt.Errorf("%s: %w", ce.Op, ce.Err) // the login, failing under this call
		}
		e.Op, e.Node, e.Err = op, n.name, n.secrets.clean(inner)
		return &e
	}
	reason, status := classify(err)
	return &Error{Op: op, Node: n.name, Reason: reason, Status: status, Err: n.secrets.clean(stripURL(err))}
}
