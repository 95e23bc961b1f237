package main

import (
	"bytes"
	"context"
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

// validEnv is a minimal valid environment: three CHT nodes and the admin.
func validEnv() map[string]string {
	return map[string]string{
		"COUCHDB_SERVERS":  "couchdb-1.local,couchdb-2.local,couchdb-3.local",
		"COUCHDB_USER":     "medic",
		"COUCHDB_PASSWORD": "pw",
	}
}

// ruleCase is one case of a rule's table: the variables changed from validEnv (an empty
// value unsets the variable) and the exact error -check-config must print ("" = valid).
type ruleCase struct {
	name string
	env  map[string]string
	want string
}

func runRules(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := validEnv()
			for k, v := range tc.env {
				if v == "" {
					delete(env, k)
				} else {
					env[k] = v
				}
			}
			_, err := loadConfig(context.Background(), envconfig.MapLookuper(env))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Fatalf("error:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := loadConfig(context.Background(), envconfig.MapLookuper(validEnv()))
	if err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"backend", c.HAProxy.Backend, "couchdb-servers"},
		{"haproxy timeout", c.HAProxy.Timeout, 2 * time.Second},
		{"agent listen", c.AgentListen, ":5555"},
		{"listen", c.Listen, ":9155"},
		{"probe interval", c.Checks.Interval, 250 * time.Millisecond},
		{"probe timeout cap", c.Checks.Timeout, time.Second},
		{"probe timeout floor", c.Checks.TimeoutMin, 75 * time.Millisecond},
		{"rise", c.Checks.Rise, 2},
		{"fall", c.Checks.Fall, 2},
		{"on node loss", c.OnNodeLoss, "serve"},
		{"max load drains", c.Policy.MaxLoadDrains, 1},
		{"kube mode", c.Kube.Mode, "auto"},
		{"kube prefix", c.Kube.Prefix, "couchwatch.medic.org"},
		{"socket", c.HAProxy.Socket, ""},
		{"dry run", c.DryRun, false},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

// COUCHWATCH_DRY_RUN is read once and reaches both writers.
func TestConfigDryRunReachesBothWriters(t *testing.T) {
	env := validEnv()
	env["COUCHWATCH_DRY_RUN"] = "true"
	c, err := loadConfig(context.Background(), envconfig.MapLookuper(env))
	if err != nil {
		t.Fatal(err)
	}
	if !c.DryRun || !c.HAProxy.DryRun || !c.Kube.DryRun {
		t.Fatalf("dry run: top %v haproxy %v kube %v, want all true", c.DryRun, c.HAProxy.DryRun, c.Kube.DryRun)
	}
}

// Every field's tags are well formed: a name declared once, a desc (the help text).
func TestConfigTags(t *testing.T) {
	vars := envVars() // panics on a duplicate or a missing desc
	if len(vars) < 40 {
		t.Fatalf("only %d variables found", len(vars))
	}
	for _, v := range vars {
		if !regexp.MustCompile(`^(COUCHDB|COUCHWATCH)_[A-Z0-9_]+$|^KUBECONFIG$`).MatchString(v.Name) {
			t.Errorf("%s (%s): not a COUCHDB_ (CHT) or COUCHWATCH_ name", v.Name, v.Field)
		}
	}
}

// Rule: a malformed number, duration or boolean is named, keeps its default and hides no
// other problem.
func TestConfigTypeErrors(t *testing.T) {
	runRules(t, []ruleCase{
		{"int", map[string]string{"COUCHWATCH_RISE": "abc"}, `COUCHWATCH_RISE: "abc" is not a valid int`},
		{"duration", map[string]string{"COUCHWATCH_PROBE_TIMEOUT": "5"}, `COUCHWATCH_PROBE_TIMEOUT: "5" is not a valid duration`},
		{"float", map[string]string{"COUCHWATCH_LOAD_HIGH": "high"}, `COUCHWATCH_LOAD_HIGH: "high" is not a valid float`},
		{"bool", map[string]string{"COUCHWATCH_DRY_RUN": "yes please"}, `COUCHWATCH_DRY_RUN: "yes please" is not a valid bool`},
		{"with other problems", map[string]string{"COUCHWATCH_RISE": "abc", "COUCHWATCH_FALL": "x", "COUCHWATCH_LOG_LEVEL": "loud",
			"COUCHDB_SERVERS": "<b>x<b>"},
			`COUCHWATCH_RISE: "abc" is not a valid int
COUCHWATCH_FALL: "x" is not a valid int
COUCHDB_SERVERS: entry 1: "<b>x<b>": bad host name (letters, digits, '-' and '_' between dots)
COUCHWATCH_LOG_LEVEL must be debug, info, warn or error, got "loud"`},
	})
}

// Rule: the credentials come as a pair, each from one source; a secret file is a small
// regular file.
func TestConfigCredentials(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pw, user := write("pw", "s3cret\n"), write("user", "medic\n")
	big, empty := write("big", strings.Repeat("x", 4097)), write("empty", "\n")
	missing := filepath.Join(dir, "missing")
	runRules(t, []ruleCase{
		{"none", map[string]string{"COUCHDB_USER": "", "COUCHDB_PASSWORD": ""}, ""},
		{"files", map[string]string{"COUCHDB_USER": "", "COUCHDB_PASSWORD": "", "COUCHDB_USER_FILE": user, "COUCHDB_PASSWORD_FILE": pw}, ""},
		{"password without user", map[string]string{"COUCHDB_USER": ""},
			"COUCHDB_USER (or COUCHDB_USER_FILE) is required when COUCHDB_PASSWORD is set"},
		{"password file without user", map[string]string{"COUCHDB_USER": "", "COUCHDB_PASSWORD": "", "COUCHDB_PASSWORD_FILE": pw},
			"COUCHDB_USER (or COUCHDB_USER_FILE) is required when COUCHDB_PASSWORD is set"},
		{"user without password", map[string]string{"COUCHDB_PASSWORD": ""},
			"COUCHDB_PASSWORD (or COUCHDB_PASSWORD_FILE) is required when COUCHDB_USER is set"},
		{"password both ways", map[string]string{"COUCHDB_PASSWORD_FILE": pw},
			"COUCHDB_PASSWORD and COUCHDB_PASSWORD_FILE are both set: set one"},
		{"user both ways", map[string]string{"COUCHDB_USER_FILE": user},
			"COUCHDB_USER and COUCHDB_USER_FILE are both set: set one"},
		{"password file missing", map[string]string{"COUCHDB_PASSWORD": "", "COUCHDB_PASSWORD_FILE": missing},
			"COUCHDB_PASSWORD_FILE: open " + missing + ": no such file or directory"},
		{"password file is a device", map[string]string{"COUCHDB_PASSWORD": "", "COUCHDB_PASSWORD_FILE": "/dev/zero"},
			"COUCHDB_PASSWORD_FILE: /dev/zero is not a regular file"},
		{"password file too large", map[string]string{"COUCHDB_PASSWORD": "", "COUCHDB_PASSWORD_FILE": big},
			"COUCHDB_PASSWORD_FILE: " + big + " is larger than 4096 bytes"},
		{"password file empty", map[string]string{"COUCHDB_PASSWORD": "", "COUCHDB_PASSWORD_FILE": empty},
			"COUCHDB_PASSWORD_FILE: " + empty + " is empty"},
		{"user file is a directory", map[string]string{"COUCHDB_USER": "", "COUCHDB_USER_FILE": dir},
			"COUCHDB_USER_FILE: " + dir + " is not a regular file"},
	})
	c, err := loadConfig(context.Background(), envOf("COUCHDB_SERVERS", "a", "COUCHDB_USER_FILE", user, "COUCHDB_PASSWORD_FILE", pw))
	if err != nil || c.User != "medic" || c.Password != "s3cret" {
		t.Fatalf("from files: user %q password %q err %v", c.User, c.Password, err)
	}
}

// /dev/zero never ends: the capped read must return, not hang (the test's own deadline
// would catch a hang; the rule above checks the message).
func TestConfigSecretFileNeverHangs(t *testing.T) {
	done := make(chan error, 1)
	go func() {
		_, err := readSecretFile("/dev/zero")
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("/dev/zero accepted as a secret file")
		}
	case <-time.After(time.Minute):
		t.Fatal("reading /dev/zero as a secret file did not return within a minute")
	}
}

// Rule: COUCHDB_SERVERS names real hosts.
func TestConfigServers(t *testing.T) {
	runRules(t, []ruleCase{
		{"required", map[string]string{"COUCHDB_SERVERS": ""}, "COUCHDB_SERVERS is required (comma list of CouchDB hosts)"},
		{"markup", map[string]string{"COUCHDB_SERVERS": "couchdb-1.local,<b>x<b>"},
			`COUCHDB_SERVERS: entry 2: "<b>x<b>": bad host name (letters, digits, '-' and '_' between dots)`},
		{"credentials never echoed", map[string]string{"COUCHDB_SERVERS": "http://u:hunter2@b:5984"},
			"COUCHDB_SERVERS: entry 1: credentials in the URL are not allowed (use COUCHDB_USER and COUCHDB_PASSWORD)"},
		{"empty entry", map[string]string{"COUCHDB_SERVERS": "a,,b"}, "COUCHDB_SERVERS: entry 2: empty"},
	})
}

// Rule: COUCHWATCH_SERVER_MAP maps hosts of COUCHDB_SERVERS to distinct HAProxy server names.
func TestConfigServerMap(t *testing.T) {
	runRules(t, []ruleCase{
		{"valid", map[string]string{"COUCHWATCH_SERVER_MAP": " couchdb-1.local = s1 , couchdb-2.local=s2"}, ""},
		{"semicolon", map[string]string{"COUCHWATCH_SERVER_MAP": "couchdb-1.local=s1;couchdb-2.local=s2"},
			`COUCHWATCH_SERVER_MAP: entry 1: server "s1;couchdb-2.local=s2" is not an HAProxy server name (letters, digits, '_', '.', ':', '-')`},
		{"space in a name", map[string]string{"COUCHWATCH_SERVER_MAP": "couchdb-1.local=couch 1"},
			`COUCHWATCH_SERVER_MAP: entry 1: server "couch 1" is not an HAProxy server name (letters, digits, '_', '.', ':', '-')`},
		{"unknown host", map[string]string{"COUCHWATCH_SERVER_MAP": "couchdb-9.local=s9"},
			`COUCHWATCH_SERVER_MAP: entry 1: host "couchdb-9.local" is not in COUCHDB_SERVERS`},
		{"two hosts on one server", map[string]string{"COUCHWATCH_SERVER_MAP": "couchdb-1.local=s1,couchdb-2.local=s1"},
			`COUCHWATCH_SERVER_MAP: entry 2: hosts "couchdb-1.local" and "couchdb-2.local" both map to server "s1"`},
		{"host twice", map[string]string{"COUCHWATCH_SERVER_MAP": "couchdb-1.local=s1,couchdb-1.local=s2"},
			`COUCHWATCH_SERVER_MAP: entry 2: host "couchdb-1.local" is mapped twice`},
		{"not host=server", map[string]string{"COUCHWATCH_SERVER_MAP": "couchdb-1.local,=s2,couchdb-3.local="},
			`COUCHWATCH_SERVER_MAP: entry 1: "couchdb-1.local" is not host=server
entry 2: "=s2" is not host=server
entry 3: "couchdb-3.local=" is not host=server`},
		{"markup in server", map[string]string{"COUCHWATCH_SERVER_MAP": "couchdb-1.local=<b>x<b>"},
			`COUCHWATCH_SERVER_MAP: entry 1: server "<b>x<b>" is not an HAProxy server name (letters, digits, '_', '.', ':', '-')`},
	})
}

// Rule: values far outside what can work are refused, not obeyed.
func TestConfigBounds(t *testing.T) {
	runRules(t, []ruleCase{
		{"probe timeout", map[string]string{"COUCHWATCH_PROBE_TIMEOUT": "1000000h"},
			"COUCHWATCH_PROBE_TIMEOUT must be within (0, 1m], got 1000000h0m0s"},
		{"probe interval zero", map[string]string{"COUCHWATCH_PROBE_INTERVAL": "0s"},
			"COUCHWATCH_PROBE_INTERVAL must be within (0, 1m], got 0s"},
		{"system interval", map[string]string{"COUCHWATCH_SYSTEM_INTERVAL": "48h"},
			"COUCHWATCH_SYSTEM_INTERVAL must be within (0, 1h], got 48h0m0s"},
		{"min ready above the servers", map[string]string{"COUCHWATCH_MIN_READY": "99999"},
			"COUCHWATCH_MIN_READY must not exceed the 3 servers of COUCHDB_SERVERS, got 99999"},
		{"min ready zero", map[string]string{"COUCHWATCH_MIN_READY": "0"}, "COUCHWATCH_MIN_READY must be >= 1, got 0"},
		{"min ready all servers", map[string]string{"COUCHWATCH_MIN_READY": "3"}, ""},
		{"rise", map[string]string{"COUCHWATCH_RISE": "1000"}, "COUCHWATCH_RISE must be 1..100, got 1000"},
		{"reconcile", map[string]string{"COUCHWATCH_RECONCILE_INTERVAL": "10h"},
			"COUCHWATCH_RECONCILE_INTERVAL must be within (0, 1m], got 10h0m0s"},
		{"weight step", map[string]string{"COUCHWATCH_WEIGHT_STEP": "1000"}, "COUCHWATCH_WEIGHT_STEP must be 1..256, got 1000"},
		{"slowstart", map[string]string{"COUCHWATCH_SLOWSTART": "100h"}, "COUCHWATCH_SLOWSTART must be within [0, 1h], got 100h0m0s"},
		{"infinite saturation point", map[string]string{"COUCHWATCH_LOAD_RUN_QUEUE": "+Inf"},
			"COUCHWATCH_LOAD_RUN_QUEUE must be > 0 and finite, got +Inf"},
		{"not a number", map[string]string{"COUCHWATCH_LOAD_HIGH": "NaN"}, "COUCHWATCH_LOAD_HIGH must be in (0,1], got NaN"},
		{"load latency", map[string]string{"COUCHWATCH_LOAD_LATENCY": "1000000h"},
			"COUCHWATCH_LOAD_LATENCY must be within (0, 1m], got 1000000h0m0s"},
		{"load sustain", map[string]string{"COUCHWATCH_LOAD_SUSTAIN": "-1s"}, "COUCHWATCH_LOAD_SUSTAIN must be within [0, 1h], got -1s"},
		{"couchdb metrics total below one node's", map[string]string{"COUCHWATCH_COUCHDB_METRICS_MAX_TOTAL_SERIES": "100"},
			"COUCHWATCH_COUCHDB_METRICS_MAX_TOTAL_SERIES must be >= COUCHWATCH_COUCHDB_METRICS_MAX_SERIES (5000), got 100"},
	})
}

// Every problem at once, each naming its variable.
func TestConfigValidateNamesEveryProblem(t *testing.T) {
	_, err := loadConfig(context.Background(), envOf(
		"COUCHDB_SERVERS", "",
		"COUCHDB_USER", "medic",
		"COUCHWATCH_LISTEN", "nonsense",
		"COUCHWATCH_LOG_LEVEL", "loud",
		"COUCHWATCH_LOG_FORMAT", "xml",
		"COUCHWATCH_ON_NODE_LOSS", "panic",
		"COUCHWATCH_RISE", "0",
		"COUCHWATCH_FALL", "abc",
		"COUCHWATCH_WEIGHT_MAX", "1000",
		"COUCHWATCH_HAPROXY_SOCKET", "ipv4@127.0.0.1:9999",
		"COUCHWATCH_KUBE", "maybe",
	))
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, v := range []string{"COUCHDB_SERVERS", "COUCHDB_PASSWORD", "COUCHWATCH_LISTEN", "COUCHWATCH_LOG_LEVEL",
		"COUCHWATCH_LOG_FORMAT", "COUCHWATCH_ON_NODE_LOSS", "COUCHWATCH_RISE", "COUCHWATCH_FALL", "COUCHWATCH_WEIGHT_MAX",
		"COUCHWATCH_HAPROXY_SOCKET", "COUCHWATCH_KUBE"} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("error does not name %s:\n%v", v, err)
		}
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

// -help lists every variable couchwatch reads, with its default and its desc.
func TestHelpListsEveryVariable(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"-help"}, envOf(), &out, &out); code != 0 {
		t.Fatalf("-help exit %d", code)
	}
	for _, v := range envVars() {
		if !regexp.MustCompile(regexp.QuoteMeta(v.Name) + `\s+\S.*` + regexp.QuoteMeta(v.Desc)).MatchString(out.String()) {
			t.Errorf("-help does not list %s with its meaning", v.Name)
		}
	}
	if !regexp.MustCompile(`COUCHWATCH_PROBE_INTERVAL\s+250ms`).MatchString(out.String()) {
		t.Errorf("-help does not show defaults:\n%s", out.String())
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
	// Both problems, the type error and the missing servers.
	if !strings.Contains(errb.String(), "COUCHWATCH_FALL") || !strings.Contains(errb.String(), "COUCHDB_SERVERS is required") {
		t.Fatalf("stderr does not name every problem: %s", errb.String())
	}
}

// docs/config.md is configDoc(); regenerate it with `go generate ./cmd/couchwatch`.
func TestConfigDoc(t *testing.T) {
	got, err := os.ReadFile(filepath.Join("..", "..", "docs", "config.md"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != configDoc() {
		t.Fatal("docs/config.md is out of date with Config: run go generate ./cmd/couchwatch")
	}
	var out bytes.Buffer
	if code := run(context.Background(), []string{"-help-markdown"}, envOf(), &out, &out); code != 0 || out.String() != configDoc() {
		t.Fatalf("-help-markdown exit %d, output differs from configDoc: %q", code, out.String())
	}
}
