package main

import (
	"net/url"
	"slices"
	"testing"

	"github.com/medic/couchwatch/couch"
	"github.com/medic/couchwatch/haproxy"
)

func target(t *testing.T, name, u string) couch.Target {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return couch.Target{Name: name, URL: pu}
}

// Nodes map to servers by explicit map, then by name, then by address:port; anything
// else is reported, never guessed.
func TestMapServers(t *testing.T) {
	obs := &haproxy.Observed{Servers: []haproxy.Server{
		{Name: "couchdb-1.local", Addr: "10.0.0.1", Port: 5984},
		{Name: "s2", Addr: "127.0.0.1", Port: 25984},
		{Name: "s3", Addr: "127.0.0.1", Port: 35984},
		{Name: "stray", Addr: "127.0.0.9", Port: 5984},
	}}
	targets := []couch.Target{
		target(t, "couchdb-1.local", "http://couchdb-1.local:5984"), // by name
		target(t, "127.0.0.1:25984", "http://127.0.0.1:25984"),      // by address
		target(t, "n3", "http://127.0.0.1:45984"),                   // explicit
		target(t, "127.0.0.1:55984", "http://127.0.0.1:55984"),      // nothing matches
		target(t, "dup", "http://127.0.0.1:65000"),                  // explicit to a taken server
	}
	got, unmapped := mapServers(targets, map[string]string{"n3": "s3", "dup": "s3"}, obs, newHostCache(targets, nil).Addrs)
	want := map[string]string{"couchdb-1.local": "couchdb-1.local", "127.0.0.1:25984": "s2", "n3": "s3"}
	if len(got) != len(want) {
		t.Fatalf("mapped %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s -> %q, want %q", k, got[k], v)
		}
	}
	if !slices.Equal(unmapped, []string{"127.0.0.1:55984", "dup"}) {
		t.Errorf("unmapped %v", unmapped)
	}
	if u := unwatched(*obs, got); !slices.Equal(u, []string{"stray"}) {
		t.Errorf("unwatched %v, want [stray]", u)
	}
	// Agent mode has no observed state: the host is the server name.
	agent, none := mapServers(targets[:1], nil, nil, nil)
	if agent["couchdb-1.local"] != "couchdb-1.local" || len(none) != 0 {
		t.Errorf("agent mode mapping %v %v", agent, none)
	}
}
