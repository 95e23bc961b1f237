package couch

import (
	"strings"
	"testing"
)

func TestParseServers(t *testing.T) {
	tests := []struct {
		name  string
		list  string
		names []string
		urls  []string
	}{
		{name: "CHT hosts", list: "couchdb-1.local,couchdb-2.local,couchdb-3.local",
			names: []string{"couchdb-1.local", "couchdb-2.local", "couchdb-3.local"},
			urls:  []string{"http://couchdb-1.local:5984", "http://couchdb-2.local:5984", "http://couchdb-3.local:5984"}},
		{name: "spaces and ports", list: " 127.0.0.1:15984 , 127.0.0.1:25984",
			names: []string{"127.0.0.1:15984", "127.0.0.1:25984"},
			urls:  []string{"http://127.0.0.1:15984", "http://127.0.0.1:25984"}},
		{name: "urls", list: "http://a:1/,https://b",
			names: []string{"a:1", "b"}, urls: []string{"http://a:1", "https://b:5984"}},
		{name: "ipv6", list: "[::1]:5985,::2,[::3]",
			names: []string{"[::1]:5985", "::2", "[::3]"}, urls: []string{"http://[::1]:5985", "http://[::2]:5984", "http://[::3]:5984"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseServers(tc.list)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.names) {
				t.Fatalf("got %d targets, want %d", len(got), len(tc.names))
			}
			for i, g := range got {
				if g.Name != tc.names[i] || g.URL.String() != tc.urls[i] {
					t.Errorf("target %d = %q %s, want %q %s", i, g.Name, g.URL, tc.names[i], tc.urls[i])
				}
			}
		})
	}
}

func TestParseServersErrors(t *testing.T) {
	tests := []struct {
		name string
		list string
		want []string // every substring must appear
	}{
		{name: "empty", list: " ", want: []string{"no servers"}},
		{name: "empty entry", list: "a,,b", want: []string{"entry 2: empty"}},
		{name: "duplicate", list: "a,a:5984", want: []string{`entry 2: "a:5984" duplicates entry 1`}},
		{name: "duplicate case", list: "http://A:1,a:1", want: []string{"duplicates entry 1"}},
		{name: "userinfo", list: "http://medic:s3cret@a", want: []string{"entry 1: credentials"}},
		{name: "bare userinfo", list: "medic:s3cret@a", want: []string{"entry 1: a bare host"}},
		{name: "path", list: "http://a/medic", want: []string{"entry 1:", "path"}},
		{name: "query", list: "http://a?x=1", want: []string{"entry 1:", "query"}},
		{name: "bad port", list: "a:0", want: []string{`bad port "0"`}},
		{name: "port too big", list: "a:65536", want: []string{`bad port "65536"`}},
		{name: "port not a number", list: "http://a:x", want: []string{"entry 1:"}},
		{name: "scheme", list: "ftp://a", want: []string{`scheme "ftp"`}},
		{name: "markup in host", list: "<b>x<b>", want: []string{`entry 1: "<b>x<b>": bad host name`}},
		{name: "markup in url host", list: "http://<b>x<b>:5984", want: []string{"entry 1:"}},
		{name: "empty label", list: "couchdb..local", want: []string{`entry 1: "couchdb..local": bad host name`}},
		{name: "all problems at once", list: "a:0,,http://u:p@b,c/d",
			want: []string{"entry 1:", "entry 2: empty", "entry 3: credentials", "entry 4:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseServers(tc.list)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "u:p@") {
				t.Errorf("error %q leaks a credential", err)
			}
		})
	}
}
