package benchkit

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/medic/couchwatch/haproxy/haproxytest"
)

// ServerState is one row of HAProxy's "show servers state".
type ServerState struct {
	Name    string
	OpState int // 0 stopped (DOWN), 1 starting, 2 running, 3 stopping
	Admin   int // srv_admin_state bits (decimal): 1 maint, 8 drain, ...
	UWeight int
}

// InRotation reports whether HAProxy would route new requests to the server: running,
// no admin bit (maint, drain) and a weight above 0.
func (s ServerState) InRotation() bool {
	return s.OpState == 2 && s.Admin == 0 && s.UWeight > 0
}

// ReadStates reads the servers of backend with one "show servers state" (cheap enough
// to poll every few milliseconds).
func ReadStates(sock, backend string) (map[string]ServerState, error) {
	out, err := haproxytest.Exchange(sock, "show servers state "+backend, time.Second)
	if err != nil {
		return nil, err
	}
	m := map[string]ServerState{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 9 || strings.HasPrefix(l, "#") || f[1] != backend {
			continue
		}
		s := ServerState{Name: f[3]}
		s.OpState, _ = strconv.Atoi(f[5])
		s.Admin, _ = strconv.Atoi(f[6])
		s.UWeight, _ = strconv.Atoi(f[7])
		m[s.Name] = s
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("no servers of %q in %q", backend, out)
	}
	return m, nil
}

// HAProxyWorkerPid asks the worker behind the admin socket for its pid.
func HAProxyWorkerPid(sock string) (int, error) {
	out, err := haproxytest.Exchange(sock, "show info", time.Second)
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "Pid: "); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("no Pid in show info")
}
