package haproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Errors callers can match with errors.Is.
var (
	// ErrNoBackend: HAProxy has no backend of that name.
	ErrNoBackend = errors.New("no such backend")
	// ErrReply: HAProxy answered a command with an error-shaped reply.
	ErrReply = errors.New("haproxy error reply")
	// ErrTruncated: the connection ended before every command was answered.
	ErrTruncated = errors.New("truncated reply")
	// ErrMalformed: a reply could not be parsed.
	ErrMalformed = errors.New("malformed reply")
)

// CommandError is an error-shaped reply, attributed to the command that caused it.
type CommandError struct {
	Command  string
	Severity int // the "[N]:" prefix, -1 if none
	Reply    string
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("%s: haproxy replied %q", e.Command, e.Reply)
}

// Unwrap makes errors.Is(err, ErrReply) true.
func (e *CommandError) Unwrap() error { return ErrReply }

// reply is the answer to one command of a batch.
type reply struct {
	severity int // -1 when the reply had no "[N]: " prefix
	text     string
}

const (
	// severityPrefix turns on numbered severities so that error replies are
	// recognisable ("[3]: No such server.").
	severityPrefix = "set severity-output number"
	// maxReply bounds what one exchange may read (a 300-server "show stat" is ~150 KiB).
	maxReply = 16 << 20
)

// exchange sends cmds as one ';'-separated line on a new unix connection and returns
// one reply per command. HAProxy 2.6 ends each command's reply with an empty line
// (a command that succeeds silently answers just "\n") and closes the connection
// after the line. Every read error, early close, missing or extra reply is an
// error: a partial answer is never returned.
func exchange(ctx context.Context, path string, timeout time.Duration, cmds []string) ([]reply, error) {
	for _, c := range cmds {
		if strings.ContainsAny(c, ";\n\r") {
			return nil, fmt.Errorf("command %q: must not contain ';' or a newline", c)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", path, err)
	}
	defer conn.Close()
	// Honour the context and the timeout for every read and write: a peer that
	// accepts and never answers fails within the timeout.
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return nil, fmt.Errorf("set deadline: %w", err)
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	line := severityPrefix + ";" + strings.Join(cmds, ";") + "\n"
	if _, err := io.WriteString(conn, line); err != nil {
		return nil, fmt.Errorf("write: %w", ctxErr(ctx, err))
	}
	raw, err := io.ReadAll(io.LimitReader(conn, maxReply+1))
	if err != nil {
		return nil, fmt.Errorf("read: %w", ctxErr(ctx, err))
	}
	if len(raw) > maxReply {
		return nil, fmt.Errorf("read: reply longer than %d bytes: %w", maxReply, ErrMalformed)
	}
	replies, err := splitReplies(string(raw), len(cmds)+1)
	if err != nil {
		return nil, err
	}
	if r := replies[0]; r.text != "" {
		return nil, &CommandError{Command: severityPrefix, Severity: r.severity, Reply: r.text}
	}
	return replies[1:], nil
}

// ctxErr makes a deadline hit on the connection match context.DeadlineExceeded (the
// connection's deadline is the context's, and may fire a moment before it).
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
	}
	return err
}

var severityRE = regexp.MustCompile(`^\[([0-7])\]: ?`)

// splitReplies cuts a raw answer into n replies, each ended by an empty line.
func splitReplies(raw string, n int) ([]reply, error) {
	out := make([]reply, 0, n)
	rest := raw
	for len(out) < n {
		if rest == "" {
			return nil, fmt.Errorf("%w: %d of %d replies received", ErrTruncated, len(out), n)
		}
		var body string
		if strings.HasPrefix(rest, "\n") {
			rest = rest[1:]
		} else {
			i := strings.Index(rest, "\n\n")
			if i < 0 {
				return nil, fmt.Errorf("%w: reply %d of %d has no end (%d bytes)", ErrTruncated, len(out)+1, n, len(rest))
			}
			body, rest = rest[:i], rest[i+2:]
		}
		r := reply{severity: -1, text: body}
		if m := severityRE.FindStringSubmatch(body); m != nil {
			r.severity, _ = strconv.Atoi(m[1])
			r.text = body[len(m[0]):]
		}
		out = append(out, r)
	}
	if rest != "" {
		return nil, fmt.Errorf("%w: %d unexpected bytes after %d replies", ErrMalformed, len(rest), n)
	}
	return out, nil
}
