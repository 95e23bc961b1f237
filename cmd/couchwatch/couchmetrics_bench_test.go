package main

import (
	"testing"

	"github.com/medic/couchwatch/couch"
)

// What one node's scrape costs couchwatch, against the bare parse of the same reply as
// a baseline: go test -run - -bench CouchMetrics ./cmd/couchwatch
func BenchmarkCouchMetricsParse(b *testing.B) {
	body, err := couch.Recorded("prometheus.txt")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := couch.ParsePrometheus(body, 5000); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCouchMetricsScrape(b *testing.B) {
	body, err := couch.Recorded("prometheus.txt")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		fams, err := couch.ParsePrometheus(body, 5000)
		if err != nil {
			b.Fatal(err)
		}
		ms, _ := withNode(fams, "couchdb-1")
		if err := gathers(ms); err != nil { // as fetch does, and once more for the union
			b.Fatal(err)
		}
	}
}
