package couch

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// redactor removes a Node's secrets from error text: the password (as sent, and as a
// server or library might quote it back: JSON-escaped, Go-quoted, URL-encoded) and the
// session cookies it has used. Every error a Node returns passes through it, because a
// server, a proxy or net/http itself may quote the request back (an echoing error page,
// a malformed status line) and the text then ends up in a log, a status page or a
// metric-adjacent field.
type redactor struct {
	fixed []string // password forms

	mu      sync.Mutex
	cookies [4]string // the most recent session cookies
	next    int
}

const redacted = "[redacted]"

// maxErrText caps the text of an error a Node returns (after redaction, so a cut never
// leaves part of a secret behind).
const maxErrText = 400

func newRedactor(password string) *redactor {
	r := &redactor{}
	if password == "" {
		return r
	}
	forms := []string{password, url.QueryEscape(password), url.PathEscape(password)}
	if b, err := json.Marshal(password); err == nil {
		forms = append(forms, string(b[1:len(b)-1]))
	}
	for _, q := range []string{strconv.Quote(password), strconv.QuoteToASCII(password)} {
		forms = append(forms, q[1:len(q)-1])
	}
	for _, f := range forms {
		if f != "" && !contains(r.fixed, f) {
			r.fixed = append(r.fixed, f)
		}
	}
	return r
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// addCookie remembers a session cookie to redact.
func (r *redactor) addCookie(c string) {
	if c == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if contains(r.cookies[:], c) {
		return
	}
	r.cookies[r.next] = c
	r.next = (r.next + 1) % len(r.cookies)
}

// text returns s without any secret, capped at maxErrText bytes.
func (r *redactor) text(s string) string {
	for _, f := range r.fixed {
		s = strings.ReplaceAll(s, f, redacted)
	}
	r.mu.Lock()
	cookies := r.cookies
	r.mu.Unlock()
	for _, c := range cookies {
		if c != "" {
			s = strings.ReplaceAll(s, c, redacted)
		}
	}
	if len(s) > maxErrText {
		s = s[:maxErrText] + "..."
	}
	return s
}

// clean returns err as a redacted error. Its text is err's, minus secrets; it unwraps
// only to the well-known error values callers match on (deadline, cancel, a syscall
// errno), never to err itself, whose text may hold a secret.
func (r *redactor) clean(err error) error {
	if err == nil {
		return nil
	}
	c := &cleanError{msg: r.text(err.Error())}
	var errno syscall.Errno
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		c.cause = context.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		c.cause = context.Canceled
	case errors.Is(err, errTooLarge):
		c.cause = errTooLarge
	case errors.As(err, &errno):
		c.cause = errno
	}
	return c
}

type cleanError struct {
	msg   string
	cause error
}

func (e *cleanError) Error() string { return e.msg }
func (e *cleanError) Unwrap() error { return e.cause }
