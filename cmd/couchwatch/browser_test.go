package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/medic/couchwatch/internal/testenv"
)

// browse loads url in a fresh headless chromium and returns the DOM as rendered; it
// also saves a screenshot as <name>.png in the test's temporary directory, and in
// COUCHWATCH_SCREENSHOTS when that is set (to look at it).
func browse(t *testing.T, bin, url, name string) string {
	t.Helper()
	run := func(args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
			"--user-data-dir=" + t.TempDir(), "--window-size=1500,1300"}
		cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium %v: %v", args, err)
		}
		return out
	}
	dom := string(run("--dump-dom", url))
	shot := filepath.Join(t.TempDir(), name+".png")
	run("--screenshot="+shot, url)
	if st, err := os.Stat(shot); err != nil || st.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v (%v bytes): the page did not render", shot, err, st)
	}
	if dir := os.Getenv("COUCHWATCH_SCREENSHOTS"); dir != "" {
		if b, err := os.ReadFile(shot); err == nil {
			_ = os.WriteFile(filepath.Join(dir, name+".png"), b, 0o644)
		}
	}
	return dom
}

// row returns the rendered <tr> of the node whose HAProxy server is server.
func row(t *testing.T, dom, server string) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)<tr class="([a-z]+)" id="node-` + regexp.QuoteMeta(server) + `">(.*?)</tr>`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no row for %s in the rendered page", server)
	}
	return m[1] + " " + m[2]
}

// text strips the tags, for assertions on what a reader sees.
func text(html string) string {
	s := regexp.MustCompile(`(?s)<svg.*?</svg>|<[^>]+>`).ReplaceAllString(html, " ")
	s = strings.NewReplacer("&gt;", ">", "&lt;", "<", "&amp;", "&", "&#39;", "'", "&#34;", `"`).Replace(s)
	return strings.Join(strings.Fields(s), " ")
}

// The status page in a real browser during a crash, a hang and a load drain.
func TestStatusPageInBrowser(t *testing.T) {
	bin := testenv.Require(t, "chromium") // Debian's chromium; fails in CI when missing
	s := newStack(t, stackOpts{runtime: true, setup: chtShards, env: map[string]string{"COUCHWATCH_SHARDS_REFRESH": "1s"}})
	s.waitAll("ready", ready)
	s.waitStatus("named and read", func(v statusView) bool {
		for _, n := range v.Nodes {
			if n.ErlangName == "" || !n.HAProxy.Reported {
				return false
			}
		}
		return v.Blast.Known
	})
	url := "http://" + s.http + "/"

	t.Run("crash", func(t *testing.T) {
		s.node(2).Stop()
		s.wait("couchdb-2", "maint", maint)
		s.waitStatus("crash shown", func(v statusView) bool {
			return nodeOf(v, "couchdb-2").HAProxy.Admin == "maint" && len(v.Blast.Lost) > 0
		})
		dom := browse(t, bin, url, "crash")
		r := row(t, dom, "couchdb-2")
		for _, want := range []string{"down ", "couchdb2@127.0.0.1", "no answer", "connection refused", "last answer: ok", "(not current)",
			"rule 3", "maint", "sessions"} {
			if !strings.Contains(text(r), want) {
				t.Errorf("crashed node's row lacks %q: %s", want, text(r))
			}
		}
		page := text(dom)
		for _, want := range []string{"LOGINS AFFECTED", "_users 4 of 12", "up → down", "set server couchdb-servers/couchdb-2 state maint"} {
			if !strings.Contains(page, want) {
				t.Errorf("page lacks %q", want)
			}
		}
		if n := strings.Count(dom, `<svg class="chart"`); n != 3 {
			t.Errorf("%d charts rendered, want one per node", n)
		}
		for _, bad := range []string{"<script", "src=", "@import", "url(", "<link"} {
			if strings.Contains(dom, bad) {
				t.Errorf("the page has %q: it must need nothing from outside (sites are often offline)", bad)
			}
		}
		if err := s.node(2).Start(); err != nil {
			t.Fatal(err)
		}
		s.wait("couchdb-2", "ready", ready)
	})

	t.Run("hang", func(t *testing.T) {
		s.node(3).Hang()
		s.wait("couchdb-3", "maint", maint)
		s.waitStatus("hang shown", func(v statusView) bool { return nodeOf(v, "couchdb-3").HAProxy.Admin == "maint" })
		r := text(row(t, browse(t, bin, url, "hang"), "couchdb-3"))
		// The hung node's last answer was ok: the page must say it is old, not current.
		if strings.Contains(r, "answered ok") || !strings.Contains(r, "no answer") || !strings.Contains(r, "timeout") ||
			!strings.Contains(r, "last answer: ok") {
			t.Errorf("hung node's row: %s", r)
		}
		s.node(3).Resume()
		s.wait("couchdb-3", "ready", ready)
	})

	t.Run("load drain", func(t *testing.T) {
		// Every node back and settled first: a load drain never goes below the
		// capacity floor, and a node that just flapped is held out for a while.
		s.waitStatus("every node serving", func(v statusView) bool {
			for _, n := range v.Nodes {
				if !serving(n) || n.Rule != "" {
					return false
				}
			}
			return true
		})
		s.node(1).SetLoad(1)
		s.wait("couchdb-1", "drain", drain)
		s.waitStatus("load drain shown", func(v statusView) bool { return nodeOf(v, "couchdb-1").HAProxy.Admin == "drain" })
		dom := browse(t, bin, url, "load-drain")
		r := text(row(t, dom, "couchdb-1"))
		for _, want := range []string{"degraded", "saturated", "rule 2: load drain within the budget", "drain"} {
			if !strings.Contains(r, want) {
				t.Errorf("loaded node's row lacks %q: %s", want, r)
			}
		}
		if !regexp.MustCompile(`driven by [a-z_]+ = [0-9.]+ \(saturates at [0-9.]+\)`).MatchString(r) {
			t.Errorf("loaded node's row does not name the signal behind its score: %s", r)
		}
		if !strings.Contains(text(dom), "set server couchdb-servers/couchdb-1 state drain") {
			t.Error("the load drain command is not in the rendered timeline")
		}
		s.node(1).SetLoad(0)
	})
}
