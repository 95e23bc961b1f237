package couch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// sessionCookie is the cookie CouchDB's POST /_session sets.
const sessionCookie = "AuthSession"

// session logs in with POST /_session and holds the AuthSession cookie. It is the one
// re-login path of a Node: every call (ours and kivik's) goes through an authRT over it.
type session struct {
	login   http.RoundTripper // guarded transport for POST /_session
	url     string            // the node's /_session URL
	node    string
	body    []byte // login body; never printed
	timeout time.Duration
	secrets *redactor

	mu     sync.Mutex
	cookie string // current AuthSession value, "" when none
	gen    uint64 // bumped by every successful login
	call   *loginCall
	// A login CouchDB rejected (bad credentials), or a session it rejected right after
	// issuing it (a node that accepts the login and answers 401 to everything else), is
	// not retried for authRetry: every retry costs CouchDB a pbkdf2 round. Callers get
	// the same error meanwhile, at no cost to the node.
	rejected   error
	rejectedAt time.Time
}

// authRetry is how long a rejected login or session is remembered before the next login.
const authRetry = 10 * time.Second

type loginCall struct {
	done   chan struct{}
	cookie string
	gen    uint64
	err    error
}

func newSession(login http.RoundTripper, base, node, user, password string, timeout time.Duration, secrets *redactor) (*session, error) {
	body, err := json.Marshal(struct {
		Name     string `json:"name"`
		Password string `json:"password"`
	}{user, password})
	if err != nil {
		return nil, fmt.Errorf("encode login: %w", err)
	}
	return &session{login: login, url: base + "/_session", node: node, body: body, timeout: timeout, secrets: secrets}, nil
}

// authRT sends each request with the session cookie; on a 401 it logs in again, once,
// and retries. A session rejected on the retry too is not trusted again for authRetry.
type authRT struct {
	s    *session
	base http.RoundTripper
}

func (a *authRT) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	s := a.s
	cookie, gen, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := a.send(req, cookie)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return resp, nil // cannot replay the body: let the caller see the 401
	}
	// The session expired or the node forgot it (restart with a new secret): log in
	// again, once, and retry.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	cookie, gen, err = s.relogin(ctx, gen)
	if err != nil {
		return nil, err
	}
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("replay request body: %w", err)
		}
		req = req.Clone(ctx)
		req.Body = body
	}
	resp, err = a.send(req, cookie)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		// Two sessions in a row rejected (the one before this login may have been fresh
		// too): a node that accepts the login and rejects its session. A single strike
		// could be a node that restarted with a new secret in between.
		s.distrust(gen)
	}
	return resp, err
}

func (a *authRT) send(req *http.Request, cookie string) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.Header.Del("Authorization")
	r.Header.Set("Cookie", sessionCookie+"="+cookie)
	resp, err := a.base.RoundTrip(r)
	if err == nil && resp.StatusCode < 300 {
		if c := authCookie(resp); c != "" {
			a.s.keep(c) // CouchDB re-issues the cookie part-way through its life
		}
	}
	return resp, err
}

// authCookie is the AuthSession value resp sets, "" if none.
func authCookie(resp *http.Response) string {
	if len(resp.Header["Set-Cookie"]) == 0 {
		return "" // the usual case: no parse, no allocation
	}
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie && c.Value != "" {
			return c.Value
		}
	}
	return ""
}

// keep replaces the current cookie with a re-issued one (not after a logout).
func (s *session) keep(cookie string) {
	s.secrets.addCookie(cookie)
	s.mu.Lock()
	if s.cookie != "" {
		s.cookie = cookie
	}
	s.mu.Unlock()
}

// current returns the cookie to use, logging in first if there is none.
func (s *session) current(ctx context.Context) (string, uint64, error) {
	s.mu.Lock()
	cookie, gen := s.cookie, s.gen
	s.mu.Unlock()
	if cookie != "" {
		return cookie, gen, nil
	}
	return s.relogin(ctx, gen)
}

// distrust marks the session of generation gen as rejected right after its login.
func (s *session) distrust(gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen {
		return
	}
	s.cookie = ""
	s.rejected = &Error{Op: "login", Node: s.node, Reason: ReasonAuth, Status: http.StatusUnauthorized,
		Err: fmt.Errorf("the node rejects the session it has just issued; next login in %v", authRetry)}
	s.rejectedAt = time.Now()
}

// relogin obtains a fresh cookie unless one newer than generation stale exists already.
// One login runs at a time; every caller waits for it (or for its own ctx). The login
// itself is bounded by the node timeout, not by the first caller's context, so one
// impatient caller cannot fail the login for the others.
func (s *session) relogin(ctx context.Context, stale uint64) (string, uint64, error) {
	s.mu.Lock()
	if s.gen != stale && s.cookie != "" {
		cookie, gen := s.cookie, s.gen
		s.mu.Unlock()
		return cookie, gen, nil
	}
	s.cookie = ""
	if s.rejected != nil && time.Since(s.rejectedAt) < authRetry {
		err := s.rejected
		s.mu.Unlock()
		return "", 0, err
	}
	call := s.call
	if call == nil {
		call = &loginCall{done: make(chan struct{})}
		s.call = call
		go s.run(call)
	}
	s.mu.Unlock()
	select {
	case <-call.done:
		return call.cookie, call.gen, call.err
	case <-ctx.Done():
		return "", 0, ctx.Err()
	}
}

func (s *session) run(call *loginCall) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	cookie, err := s.post(ctx)
	cancel()
	s.mu.Lock()
	s.rejected = nil
	if err == nil {
		s.gen++
		s.cookie = cookie
	} else if Classify(err) == ReasonAuth {
		s.rejected, s.rejectedAt = err, time.Now()
	}
	call.cookie, call.gen, call.err = cookie, s.gen, err
	s.call = nil
	s.mu.Unlock()
	close(call.done)
}

func (s *session) post(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(s.body))
	if err != nil {
		return "", s.fail(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	// A login is safe to send again: let net/http retry it on a new connection when the
	// kept-alive one turns out closed by the node (a nil value marks it, unsent).
	req.Header["X-Idempotency-Key"] = nil
	resp, err := s.login.RoundTrip(req)
	if err != nil {
		return "", s.fail(err)
	}
	defer resp.Body.Close()
	// The reply is never quoted: a server or proxy that echoes the request would put the
	// password into the error text. Only its status and CouchDB's error token are kept.
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", s.fail(err)
	}
	if resp.StatusCode != http.StatusOK {
		e := statusError("login", resp.StatusCode, body, false)
		e.Node = s.node
		return "", e
	}
	cookie := authCookie(resp)
	if cookie == "" {
		return "", &Error{Op: "login", Node: s.node, Reason: ReasonAuth, Status: resp.StatusCode, Err: errors.New("no AuthSession cookie in the reply")}
	}
	s.secrets.addCookie(cookie)
	return cookie, nil
}

func (s *session) fail(err error) *Error {
	reason, status := classify(err)
	return &Error{Op: "login", Node: s.node, Reason: reason, Status: status, Err: s.secrets.clean(stripURL(err))}
}
