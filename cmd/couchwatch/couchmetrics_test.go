package main

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/medic/couchwatch/couch"
)

// The family signatures stand in for gathering every node's series together: where the
// union gathers cleanly they agree, and where one node's family differs in help or type
// (two CouchDB versions) both the gather and the signatures say so.
func TestCouchMetricsSignaturesMatchTheUnionGather(t *testing.T) {
	scrape := func(node string, edit func(body []byte) []byte) ([]prometheus.Metric, familySigs) {
		t.Helper()
		body, err := couch.Recorded("prometheus.txt")
		if err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			body = edit(body)
		}
		fams, err := couch.ParsePrometheus(body, 5000)
		if err != nil {
			t.Fatal(err)
		}
		return withNode(fams, node)
	}
	replace := func(old, new string) func([]byte) []byte {
		return func(b []byte) []byte {
			out := []byte(strings.Replace(string(b), old, new, 1))
			if string(out) == string(b) {
				t.Fatalf("fixture has no %q", old)
			}
			return out
		}
	}
	m1, s1 := scrape("couchdb-1", nil)
	tests := []struct {
		name     string
		edit     func([]byte) []byte
		conflict string
	}{
		{"same version", nil, ""},
		{"other help", replace("# HELP couchdb_uptime_seconds ", "# HELP couchdb_uptime_seconds changed "), "couchdb_uptime_seconds"},
		{"other type", replace("# TYPE couchdb_uptime_seconds counter", "# TYPE couchdb_uptime_seconds gauge"), "couchdb_uptime_seconds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m2, s2 := scrape("couchdb-2", tc.edit)
			union := append(append(constCollector{}, m1...), m2...)
			gerr := gathers(union)
			got := s2.conflict(s1)
			if got != tc.conflict {
				t.Errorf("conflict %q, want %q", got, tc.conflict)
			}
			if (gerr != nil) != (tc.conflict != "") {
				t.Errorf("union gather error %v, but signature conflict %q", gerr, got)
			}
		})
	}
}
