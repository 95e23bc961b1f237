package main

import (
	"bytes"
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
)

func envOf(kv ...string) envconfig.Lookuper {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return envconfig.MapLookuper(m)
}

func TestConfigDefaults(t *testing.T) {
	c, err := loadConfig(context.Background(), envOf("COUCHDB_SERVERS", "couchdb-1.local,couchdb-2.local", "COUCHDB_USER", "medic", "COUCHDB_PASSWORD", "pw"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"backend", c.HAProxyBackend, "couchdb-servers"},
		{"agent listen", c.AgentListen, ":5555"},
		{"listen", c.Listen, ":9155"},
		{"probe interval", c.Checks.Interval, 500 * time.Millisecond},
		{"rise", c.Checks.Rise, 2},
		{"fall", c.Checks.Fall, 2},
		{"on node loss", c.OnNodeLoss, "serve"},
		{"max load drains", c.Policy.MaxLoadDrains, 1},
		{"kube mode", c.Kube.Mode, "auto"},
		{"socket", c.HAProxySocket, ""},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

// Every problem at once, each naming its variable.
func TestConfigValidateNamesEveryProblem(t *testing.T) {
	c, err := loadConfig(context.Background(), envOf(
		"COUCHDB_SERVERS", "",
		"COUCHDB_USER", "medic",
		"COUCHWATCH_LISTEN", "nonsense",
		"COUCHWATCH_LOG_LEVEL", "loud",
		"COUCHWATCH_LOG_FORMAT", "xml",
		"COUCHWATCH_ON_NODE_LOSS", "panic",
		"COUCHWATCH_RISE", "0",
		"COUCHWATCH_WEIGHT_MAX", "1000",
		"COUCHWATCH_SERVER_MAP", "a=b,c",
		"COUCHWATCH_HAPROXY_SOCKET", "ipv4@127.0.0.1:9999",
		"COUCHWATCH_KUBE", "maybe",
	))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, v := range []string{"COUCHDB_SERVERS", "COUCHDB_PASSWORD", "COUCHWATCH_LISTEN", "COUCHWATCH_LOG_LEVEL",
		"COUCHWATCH_LOG_FORMAT", "COUCHWATCH_ON_NODE_LOSS", "COUCHWATCH_RISE", "COUCHWATCH_WEIGHT_MAX",
		"COUCHWATCH_SERVER_MAP", "COUCHWATCH_HAPROXY_SOCKET", "COUCHWATCH_KUBE"} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("error does not name %s:\n%v", v, err)
		}
	}
}

func TestConfigBadServers(t *testing.T) {
	c, _ := loadConfig(context.Background(), envOf("COUCHDB_SERVERS", "a,,http://u:secret@b:5984"))
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "COUCHDB_SERVERS") {
		t.Fatalf("bad servers not reported: %v", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("error leaks a password: %v", err)
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(context.Background(), envOf("COUCHDB_SERVERS", "a", "COUCHDB_USER", "medic", "COUCHDB_PASSWORD_FILE", pw))
	if err != nil {
		t.Fatal(err)
	}
	if c.Password != "s3cret" {
		t.Fatalf("password from file = %q", c.Password)
	}
	_, err = loadConfig(context.Background(), envOf("COUCHDB_SERVERS", "a", "COUCHDB_PASSWORD_FILE", filepath.Join(dir, "missing")))
	if err == nil || !strings.Contains(err.Error(), "COUCHDB_PASSWORD_FILE") {
		t.Fatalf("missing secret file not reported: %v", err)
	}
}

func TestSecretsNeverLogged(t *testing.T) {
	c, _ := loadConfig(context.Background(), envOf("COUCHDB_SERVERS", "a", "COUCHDB_USER", "medic", "COUCHDB_PASSWORD", "hunter2-secret"))
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", c)
	if strings.Contains(buf.String(), "hunter2-secret") {
		t.Fatalf("password logged: %s", buf.String())
	}
	if !strings.Contains(buf.String(), "<redacted>") {
		t.Fatalf("password not marked redacted: %s", buf.String())
	}
}

// -help lists every variable couchwatch reads, with its default and a meaning.
func TestHelpListsEveryVariable(t *testing.T) {
	vars := envVars()
	if len(vars) < 40 {
		t.Fatalf("only %d variables found", len(vars))
	}
	var out bytes.Buffer
	if code := run(context.Background(), []string{"-help"}, envOf(), &out, &out); code != 0 {
		t.Fatalf("-help exit %d", code)
	}
	for _, v := range vars {
		if v.Help == "" {
			t.Errorf("%s has no help text in varHelp", v.Name)
		}
		if !strings.Contains(out.String(), v.Name) {
			t.Errorf("-help does not list %s", v.Name)
		}
	}
	if !regexp.MustCompile(`COUCHWATCH_PROBE_INTERVAL\s+500ms`).MatchString(out.String()) {
		t.Errorf("-help does not show defaults:\n%s", out.String())
	}
	for name := range varHelp {
		found := false
		for _, v := range vars {
			found = found || v.Name == name
		}
		if !found {
			t.Errorf("varHelp documents %s, which Config does not read", name)
		}
	}
}

func TestCheckConfigExitCodes(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"-check-config"}, envOf("COUCHDB_SERVERS", "a:5984"), &out, &errb); code != 0 {
		t.Fatalf("valid config: exit %d, stderr %s", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	code := run(context.Background(), []string{"-check-config"}, envOf("COUCHWATCH_FALL", "x"), &out, &errb)
	if code != 2 {
		t.Fatalf("invalid config: exit %d, want 2", code)
	}
	if !strings.Contains(errb.String(), "COUCHWATCH_FALL") {
		t.Fatalf("stderr does not name the variable: %s", errb.String())
	}
}

func TestParseServerMap(t *testing.T) {
	m, err := parseServerMap(" a = s1 , b=s2")
	if err != nil || m["a"] != "s1" || m["b"] != "s2" {
		t.Fatalf("map %v err %v", m, err)
	}
	for _, bad := range []string{"a", "a=", "=b", "a=b,a=c"} {
		if _, err := parseServerMap(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// docs/config.md is the -help table as Markdown; regenerate with
// `go test ./cmd/couchwatch -run TestConfigDoc -update`.
func TestConfigDoc(t *testing.T) {
	want := configDoc()
	path := filepath.Join("..", "..", "docs", "config.md")
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if string(got) != want {
		t.Fatalf("docs/config.md is out of date with Config: run go test ./cmd/couchwatch -run TestConfigDoc -update")
	}
}

var update = flag.Bool("update", false, "rewrite docs/config.md")
