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

// session logs in with POST /_session and adds the AuthSession cookie to every request.
// On a 401 it logs in again once and retries the request; concurrent callers share one
// login. It is an http.RoundTripper so kivik and our own requests go through it alike.
type session struct {
	base    http.RoundTripper // capped transport, for kivik's requests
	wire    *wire             // the login goes through the node's own client
	node    string
	body    []byte // login body; never printed
	timeout time.Duration

	mu     sync.Mutex
	cookie string // current AuthSession value, "" when none
	gen    uint64 // bumped by every successful login
	call   *loginCall
	// A login CouchDB rejected (bad credentials) is not retried for authRetry: every
	// probe would otherwise cost CouchDB a pbkdf2 round. Callers get the same error.
	rejected   error
	rejectedAt time.Time
}

// authRetry is how long a rejected login is remembered before the next attempt.
const authRetry = 10 * time.Second

type loginCall struct {
	done   chan struct{}
	cookie string
	gen    uint64
	err    error
}

func newSession(base http.RoundTripper, w *wire, node, user, password string, timeout time.Duration) (*session, error) {
	body, err := json.Marshal(struct {
		Name     string `json:"name"`
		Password string `json:"password"`
	}{user, password})
	if err != nil {
		return nil, fmt.Errorf("encode login: %w", err)
	}
	return &session{base: base, wire: w, node: node, body: body, timeout: timeout}, nil
}

func (s *session) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	cookie, gen, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := s.send(req, cookie)
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
	cookie, _, err = s.login(ctx, gen)
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
	return s.send(req, cookie)
}

func (s *session) send(req *http.Request, cookie string) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.Header.Del("Authorization")
	r.Header.Set("Cookie", sessionCookie+"="+cookie)
	resp, err := s.base.RoundTrip(r)
	if err == nil {
		s.refresh(resp)
	}
	return resp, err
}

// refresh keeps a cookie CouchDB re-issued on an ordinary reply (it does so once a
// session is past part of its lifetime).
func (s *session) refresh(resp *http.Response) {
	if resp.StatusCode >= 300 {
		return
	}
	if c := authCookie(resp); c != "" {
		s.keep(c)
	}
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
	return s.login(ctx, gen)
}

// login obtains a fresh cookie unless one newer than generation stale exists already.
// One login runs at a time; every caller waits for it (or for its own ctx). The login
// itself is bounded by the node timeout, not by the first caller's context, so one
// impatient caller cannot fail the login for the others.
func (s *session) login(ctx context.Context, stale uint64) (string, uint64, error) {
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
	rep, err := s.wire.do(ctx, wreq{method: http.MethodPost, path: "/_session", body: s.body}, false)
	if err != nil {
		return "", s.fail(err)
	}
	if rep.status != http.StatusOK {
		e := statusError("login", rep.status, bytes.NewReader(rep.body))
		e.Node = s.node
		return "", e
	}
	if rep.cookie == "" {
		return "", &Error{Op: "login", Node: s.node, Reason: ReasonAuth, Status: rep.status, Err: errors.New("no AuthSession cookie in the reply")}
	}
	return rep.cookie, nil
}

func (s *session) fail(err error) *Error {
	reason, status := classify(err)
	return &Error{Op: "login", Node: s.node, Reason: reason, Status: status, Err: stripURL(err)}
}
