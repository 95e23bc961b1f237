package testenv

import (
	"bytes"
	"sync"
)

// LogBuffer collects what several goroutines write (a logger, a process's output) for a
// test to read. It is safe for concurrent use and its zero value is ready. Max > 0 caps
// what it keeps, so a chatty process stays bounded: writes past it are dropped but
// reported as written, so the writer never fails.
type LogBuffer struct {
	Max int

	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Max <= 0 {
		return l.buf.Write(p)
	}
	if room := l.Max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// String returns everything kept so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
