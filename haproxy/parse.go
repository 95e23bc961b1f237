package haproxy

import (
	"encoding/csv"
	"fmt"
	"strconv"
	"strings"
)

// Admin state bits of "show servers state" srv_admin_state, printed in decimal.
const (
	adminForcedMaint    = 0x01
	adminInheritedMaint = 0x02
	adminConfigMaint    = 0x04
	adminForcedDrain    = 0x08
	adminInheritedDrain = 0x10 // drain via track
	adminResolvMaint    = 0x20 // maint via resolution
	adminHostnameMaint  = 0x40
)

func adminFromBits(b int) AdminState {
	switch {
	case b&(adminForcedMaint|adminInheritedMaint|adminConfigMaint|adminResolvMaint|adminHostnameMaint) != 0:
		return StateMaint
	case b&(adminForcedDrain|adminInheritedDrain) != 0:
		return StateDrain
	default:
		return StateReady
	}
}

// parseServersState parses the reply to "show servers state <backend>" (format 1).
// Every server line must belong to backend and carry every column of the header.
func parseServersState(backend, text string) ([]Server, error) {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) < 2 || strings.TrimSpace(lines[0]) != "1" {
		return nil, fmt.Errorf("show servers state: %w: want format version 1, got %.60q", ErrMalformed, text)
	}
	head, ok := strings.CutPrefix(lines[1], "# ")
	if !ok {
		return nil, fmt.Errorf("show servers state: %w: no header line", ErrMalformed)
	}
	header := strings.Fields(head)
	cols := map[string]int{}
	for i, c := range header {
		cols[c] = i
	}
	for _, c := range []string{"be_name", "srv_name", "srv_addr", "srv_op_state", "srv_admin_state", "srv_uweight", "srv_iweight", "srv_port"} {
		if _, ok := cols[c]; !ok {
			return nil, fmt.Errorf("show servers state: %w: no column %s", ErrMalformed, c)
		}
	}
	var out []Server
	for n, l := range lines[2:] {
		f := strings.Fields(l)
		if len(f) != len(header) {
			return nil, fmt.Errorf("show servers state: %w: line %d has %d fields, want %d", ErrMalformed, n+3, len(f), len(header))
		}
		if f[cols["be_name"]] != backend {
			return nil, fmt.Errorf("show servers state: %w: line %d is for backend %q", ErrMalformed, n+3, f[cols["be_name"]])
		}
		s := Server{Name: f[cols["srv_name"]], Addr: f[cols["srv_addr"]]}
		ints := []struct {
			col string
			dst *int
		}{
			{"srv_op_state", &s.OpState}, {"srv_admin_state", &s.AdminBits},
			{"srv_uweight", &s.UWeight}, {"srv_iweight", &s.IWeight}, {"srv_port", &s.Port},
		}
		for _, x := range ints {
			v, err := strconv.Atoi(f[cols[x.col]])
			if err != nil {
				return nil, fmt.Errorf("show servers state: %w: server %s %s: %w", ErrMalformed, s.Name, x.col, err)
			}
			*x.dst = v
		}
		s.Admin = adminFromBits(s.AdminBits)
		s.OpUp = s.OpState == 2
		out = append(out, s)
	}
	return out, nil
}

// statRow is what couchwatch reads from one "show stat" server line.
type statRow struct {
	weight      int
	scur        int
	status      string
	checkStatus string
	agentStatus string
	traffic     Traffic
}

// parseStat parses "show stat <backend> 4 -1" (CSV, header "# pxname,svname,...").
func parseStat(backend, text string) (map[string]statRow, error) {
	body, ok := strings.CutPrefix(text, "# ")
	if !ok {
		return nil, fmt.Errorf("show stat: %w: no header line", ErrMalformed)
	}
	r := csv.NewReader(strings.NewReader(body))
	r.FieldsPerRecord = -1
	r.LazyQuotes = true
	recs, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("show stat: %w: %w", ErrMalformed, err)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("show stat: %w: empty", ErrMalformed)
	}
	cols := map[string]int{}
	for i, c := range recs[0] {
		cols[c] = i
	}
	need := 0 // fields a row needs to hold every column read
	for _, c := range []string{"pxname", "svname", "scur", "status", "weight", "check_status", "agent_status"} {
		i, ok := cols[c]
		if !ok {
			return nil, fmt.Errorf("show stat: %w: no column %s", ErrMalformed, c)
		}
		need = max(need, i+1)
	}
	out := map[string]statRow{}
	for n, rec := range recs[1:] {
		if len(rec) < need {
			return nil, fmt.Errorf("show stat: %w: line %d has %d fields, want at least %d", ErrMalformed, n+2, len(rec), need)
		}
		if rec[cols["pxname"]] != backend {
			return nil, fmt.Errorf("show stat: %w: line %d is for proxy %q", ErrMalformed, n+2, rec[cols["pxname"]])
		}
		name := rec[cols["svname"]]
		if name == "FRONTEND" || name == "BACKEND" {
			continue
		}
		row := statRow{status: rec[cols["status"]], checkStatus: rec[cols["check_status"]], agentStatus: rec[cols["agent_status"]]}
		if row.weight, err = atoiEmpty(rec[cols["weight"]]); err != nil {
			return nil, fmt.Errorf("show stat: %w: server %s weight: %w", ErrMalformed, name, err)
		}
		if row.scur, err = atoiEmpty(rec[cols["scur"]]); err != nil {
			return nil, fmt.Errorf("show stat: %w: server %s scur: %w", ErrMalformed, name, err)
		}
		if row.traffic, err = parseTraffic(cols, rec); err != nil {
			return nil, fmt.Errorf("show stat: %w: server %s: %w", ErrMalformed, name, err)
		}
		out[name] = row
	}
	return out, nil
}

func atoiEmpty(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	return strconv.Atoi(s)
}
