package haproxy_test

import (
	"testing"
	"time"

	"github.com/medic/couchwatch/haproxy/haproxytest"
)

// Does HAProxy's own `slowstart` apply when the runtime API brings a server back from
// maint? Measured on 2.6.12: yes, with or without `check`: leaving maint starts the ramp
// (weight 7 of 100 right after "state ready" with slowstart 20s). It does not apply to a
// server that was only drained (drain keeps it UP). So couchwatch's own ramp
// (COUCHWATCH_SLOWSTART) covers drains and load weights too; where a site sets HAProxy's
// slowstart as well, the effective weight is the lower of the two.
func TestSlowstartAndRuntimeReady(t *testing.T) {
	for _, tc := range []struct {
		name     string
		extra    string
		out      string // the state the server leaves
		wantRamp bool
	}{
		{"maint with check", "weight 100 slowstart 20s check inter 100ms rise 1 fall 1", "maint", true},
		{"maint without check", "weight 100 slowstart 20s", "maint", true},
		{"drain with check", "weight 100 slowstart 20s check inter 100ms rise 1 fall 1", "drain", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := haproxytest.StartT(t, haproxytest.Options{Servers: []haproxytest.ServerSpec{
				{Name: "n1", Addr: upstream(t), Extra: tc.extra},
				{Name: "n2", Addr: upstream(t), Extra: "weight 100"},
			}})
			p.WaitServer(t, backend, "n1", func(s haproxytest.Server) bool { return s.Status == "UP" || s.Status == "no check" }, 5*time.Second)
			if _, err := p.Cmd("set server " + backend + "/n1 state " + tc.out); err != nil {
				t.Fatal(err)
			}
			p.WaitServer(t, backend, "n1", func(s haproxytest.Server) bool { return s.AdminBits != 0 }, 5*time.Second)
			if _, err := p.Cmd("set server " + backend + "/n1 state ready"); err != nil {
				t.Fatal(err)
			}
			s := p.WaitServer(t, backend, "n1", func(s haproxytest.Server) bool { return s.AdminBits == 0 && s.Weight > 0 }, 5*time.Second)
			ramping := s.Weight < 100
			t.Logf("%s: weight right after runtime ready: %d (status %s)", tc.name, s.Weight, s.Status)
			if ramping != tc.wantRamp {
				t.Fatalf("weight after ready = %d; ramp %v, want %v", s.Weight, ramping, tc.wantRamp)
			}
		})
	}
}
