package couch_test

import (
	"context"
	"testing"

	"github.com/medic/couchwatch/couch"
)

// UpFresh never reuses the kept-alive probe connection: it dials its own every time,
// and Up keeps its own.
func TestNodeUpFreshDialsItsOwnConnection(t *testing.T) {
	s := newUpServer(t, false, 0, nil)
	n := nodeFor(t, s.URL, couch.Options{})
	steps := []struct {
		name  string
		call  func(context.Context) (couch.Up, error)
		conns int64
	}{
		{"first Up dials", n.Up, 1},
		{"second Up reuses", n.Up, 1},
		{"UpFresh dials", n.UpFresh, 2},
		{"Up still reuses its own", n.Up, 2},
		{"UpFresh dials again", n.UpFresh, 3},
	}
	for _, st := range steps {
		up, err := st.call(context.Background())
		if err != nil || up.Status != couch.StatusOK {
			t.Fatalf("%s: %+v, %v", st.name, up, err)
		}
		if got := s.conns.Load(); got != st.conns {
			t.Fatalf("%s: %d connections, want %d", st.name, got, st.conns)
		}
	}
}
