package couch

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
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
	defaultIdleConnTimeout = 15 * time.Second // only kivik and logins use net/http: rare calls
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
type Node struct {
	name    string
	base    *url.URL
	timeout time.Duration
	wire    *wire
	kivik   *kivik.Client
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
	var rt http.RoundTripper = &capTransport{base: newTransport(tlsConf), max: opt.MaxBody}
	w := &wire{addr: base.Host, host: hostHeader(base.Scheme, base.Host), tls: tlsConf,
		dialer: net.Dialer{KeepAlive: defaultKeepAlive}, max: opt.MaxBody}
	if opt.User != "" {
		s, err := newSession(rt, w, name, opt.User, opt.Password, opt.Timeout)
		if err != nil {
			return nil, fmt.Errorf("node %q: %w", name, err)
		}
		rt, w.sess = s, s
	}
	client := &http.Client{
		Transport: rt,
		// CouchDB does not redirect the calls we make; a redirect means something in
		// between we do not want to follow with a session cookie.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	kc, err := kivik.New("couch", base.String(), couchdb.OptionHTTPClient(client), couchdb.OptionUserAgent(userAgent))
	if err != nil {
		return nil, fmt.Errorf("node %q: kivik client: %w", name, stripURL(err))
	}
	return &Node{
		name:    name,
		base:    base,
		timeout: opt.Timeout,
		wire:    w,
		kivik:   kc,
	}, nil
}

// Name returns the target's name (as written in COUCHDB_SERVERS).
func (n *Node) Name() string { return n.name }

// URL returns a copy of the node's base URL; it never holds credentials.
func (n *Node) URL() *url.URL {
	u := *n.base
	return &u
}

// Up asks GET /_up. A 404 maintenance reply (maintenance_mode, nolb, seeding) is a
// successful call: check Up.Status.
func (n *Node) Up(ctx context.Context) (Up, error) {
	const op = "up"
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	status, body, err := n.wire.get(ctx, "/_up", true)
	if err != nil {
		return Up{}, n.fail(op, err)
	}
	up, err := parseUp(status, body)
	if err != nil {
		return Up{}, n.fail(op, err)
	}
	return up, nil
}

// Membership asks GET /_membership.
func (n *Node) Membership(ctx context.Context) (Membership, error) {
	const op = "membership"
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	body, err := n.getOK(ctx, op, "/_membership")
	if err != nil {
		return Membership{}, err
	}
	m, err := parseMembership(body)
	if err != nil {
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

// Watch holds the node's /_up connection idle for up to d and reports whether the
// node closed it meanwhile. A crashed CouchDB's kernel closes its connections at once,
// so a caller that watches between probes learns of a crash within milliseconds and
// can probe again. A healthy node's idle close looks the same: the probe tells them
// apart. Watch dials a connection to hold when it has none; when that fails it just
// waits out d. It returns false at once when ctx ends.
func (n *Node) Watch(ctx context.Context, d time.Duration) bool {
	return n.wire.watch(ctx, d, n.timeout)
}

// Close closes the node's idle connections.
func (n *Node) Close() { n.wire.closeIdle() }

// withDeadline bounds ctx by the node timeout (the sooner deadline wins).
func (n *Node) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, n.timeout)
}

// getOK is get for calls where only 200 is a success.
func (n *Node) getOK(ctx context.Context, op, path string) ([]byte, error) {
	status, body, err := n.wire.get(ctx, path, false)
	if err != nil {
		return nil, n.fail(op, err)
	}
	if status != http.StatusOK {
		return nil, n.fail(op, statusError(op, status, bytes.NewReader(body)))
	}
	return body, nil
}

// fail wraps err into an *Error for op with its Reason; credentials never reach it
// (the URL carries none and the login body is never printed).
func (n *Node) fail(op string, err error) *Error {
	var ce *Error
	if errors.As(err, &ce) && ce.Node == "" && ce.Op == op {
		e := *ce
		e.Node = n.name
		return &e
	}
	reason, status := classify(err)
	return &Error{Op: op, Node: n.name, Reason: reason, Status: status, Err: stripURL(err)}
}
