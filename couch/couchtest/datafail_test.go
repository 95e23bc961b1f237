package couchtest

import "testing"

// SetDataFailures(2) fails every other data request with a 500 while /_up still
// answers ok; SetDataFailures(0) ends it.
func TestDataFailures(t *testing.T) {
	c := NewClusterT(t, 1, Options{})
	n := c.Nodes()[0]
	n.SetDataFailures(2)
	failed := 0
	for range 10 {
		if r := do(t, "GET", n.URL()+"/medic", basic); r.status == 500 {
			failed++
		} else if r.status != 200 {
			t.Fatalf("data request: %d", r.status)
		}
		if r := do(t, "GET", n.URL()+"/_up", basic); r.status != 200 {
			t.Fatalf("/_up while failing data: %d", r.status)
		}
	}
	if failed != 5 {
		t.Fatalf("%d of 10 data requests failed, want 5", failed)
	}
	n.SetDataFailures(0)
	if r := do(t, "GET", n.URL()+"/medic", basic); r.status != 200 {
		t.Fatalf("after SetDataFailures(0): %d", r.status)
	}
}

// StopAll stops every node: each refuses connections afterwards and can start again.
func TestStopAll(t *testing.T) {
	c := NewClusterT(t, 3, Options{})
	c.Nodes()[1].Stop() // already stopped: left alone
	c.StopAll()
	for i, n := range c.Nodes() {
		if n.Running() {
			t.Fatalf("node %d still running", i+1)
		}
		if err := n.Start(); err != nil {
			t.Fatalf("node %d restart: %v", i+1, err)
		}
		if r := do(t, "GET", n.URL()+"/_up", basic); r.status != 200 {
			t.Fatalf("node %d after restart: %d", i+1, r.status)
		}
	}
}
