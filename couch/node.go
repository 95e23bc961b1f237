package couch

import (
	"bytes"
	"context"
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
	defaultIdleConnTimeout = 90 * time.Second
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
	// Transport replaces the node's own keep-alive transport (tests, benchmarks).
	Transport http.RoundTripper
}

// Node is a client for one CouchDB node. It is safe for concurrent use.
type Node struct {
	name    string
	base    *url.URL
	timeout time.Duration
	client  *http.Client
	kivik   *kivik.Client
	dialer  net.Dialer
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
	var rt http.RoundTripper = opt.Transport
	if rt == nil {
		rt = newTransport()
	}
	rt = &capTransport{base: rt, max: opt.MaxBody}
	if opt.User != "" {
		s, err := newSession(rt, base, name, opt.User, opt.Password, opt.Timeout)
		if err != nil {
			return nil, fmt.Errorf("node %q: %w", name, err)
		}
		rt = s
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
		client:  client,
		kivik:   kc,
		dialer:  net.Dialer{KeepAlive: defaultKeepAlive},
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
	status, body, err := n.get(ctx, "/_up")
	if err != nil {
		return Up{}, n.fail(op, err)
	}
	up, err := ParseUp(status, bytes.NewReader(body))
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
	m, err := n.kivik.Membership(ctx)
	if err != nil {
		return Membership{}, n.fail(op, err)
	}
	out := Membership{AllNodes: m.AllNodes, ClusterNodes: m.ClusterNodes}
	if err := checkMembership(out); err != nil {
		return Membership{}, n.fail(op, err)
	}
	return out, nil
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
	s, err := ParseSystem(bytes.NewReader(body))
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

// Hold opens a plain TCP connection to the node, sends nothing, and blocks until the
// peer closes or resets it (an *Error with ReasonRefused) or ctx ends (ctx.Err()).
// A crashed CouchDB's kernel closes its connections at once, so a caller holding one
// learns of a crash within milliseconds and can re-probe. A failed dial is an *Error
// too (refused, timeout, ...). An idle close by a healthy CouchDB looks the same as a
// crash: callers re-probe and hold again.
func (n *Node) Hold(ctx context.Context) error {
	const op = "hold"
	dctx, cancel := n.withDeadline(ctx)
	conn, err := n.dialer.DialContext(dctx, "tcp", n.base.Host)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return n.fail(op, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 512)
	for {
		_, err := conn.Read(buf) // CouchDB never speaks first; anything read is dropped
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, io.EOF) {
			err = errors.New("connection closed by peer")
		}
		return &Error{Op: op, Node: n.name, Reason: ReasonRefused, Err: err}
	}
}

// withDeadline bounds ctx by the node timeout (the sooner deadline wins).
func (n *Node) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, n.timeout)
}

// get sends GET path and returns the status and the whole (capped) body.
func (n *Node) get(ctx context.Context, path string) (int, []byte, error) {
	u := n.base.JoinPath(path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	resp, err := n.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, body, nil
}

// getOK is get for calls where only 200 is a success.
func (n *Node) getOK(ctx context.Context, op, path string) ([]byte, error) {
	status, body, err := n.get(ctx, path)
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
