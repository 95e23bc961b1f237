package manifests_test

// CHT Watchdog: Prometheus scraping every 5 minutes, alerting through Grafana.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"sigs.k8s.io/yaml"
)

const (
	watchdogScrape     = 5 * time.Minute
	watchdogScrapeFile = "prometheus/watchdog/scrape-couchwatch.yml"
)

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func filepathAbs(p string) (string, error) { return filepath.Abs(p) }

type alertRule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

type ruleFile struct {
	Groups []struct {
		Name     string      `json:"name"`
		Interval string      `json:"interval,omitempty"`
		Rules    []alertRule `json:"rules"`
	} `json:"groups"`
}

func alertRules(t *testing.T, path string) []alertRule {
	t.Helper()
	var f ruleFile
	mustYAML(t, readFile(t, path), &f)
	var out []alertRule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// grafanaAlerts renders the Watchdog rules as a Grafana alert provisioning file: one
// Prometheus query per alert (every series it returns is one firing alert, as in
// Prometheus) and a threshold on it.
func grafanaAlerts(t *testing.T) []byte {
	t.Helper()
	type query struct {
		RefID             string         `json:"refId"`
		RelativeTimeRange map[string]int `json:"relativeTimeRange,omitempty"`
		DatasourceUID     string         `json:"datasourceUid"`
		Model             map[string]any `json:"model"`
	}
	type rule struct {
		UID          string            `json:"uid"`
		Title        string            `json:"title"`
		Condition    string            `json:"condition"`
		Data         []query           `json:"data"`
		NoDataState  string            `json:"noDataState"`
		ExecErrState string            `json:"execErrState"`
		For          string            `json:"for"`
		Labels       map[string]string `json:"labels"`
		Annotations  map[string]string `json:"annotations"`
		IsPaused     bool              `json:"isPaused"`
	}
	var rules []rule
	for _, r := range alertRules(t, watchdogRulesFile) {
		forDur := r.For
		if forDur == "" {
			forDur = "0s"
		}
		rules = append(rules, rule{
			UID:       "cw-" + strings.ToLower(r.Alert),
			Title:     r.Alert,
			Condition: "B",
			Data: []query{
				{RefID: "A", RelativeTimeRange: map[string]int{"from": 3600, "to": 0}, DatasourceUID: "prometheus",
					Model: map[string]any{"refId": "A", "expr": "(" + r.Expr + ") * 0 + 1", "instant": true, "range": false}},
				{RefID: "B", DatasourceUID: "__expr__",
					Model: map[string]any{"refId": "B", "type": "threshold", "expression": "A",
						"conditions": []any{map[string]any{"evaluator": map[string]any{"type": "gt", "params": []any{0}}}}}},
			},
			// No series = nothing firing, as in Prometheus; a failing query is an error.
			NoDataState: "OK", ExecErrState: "Error",
			For: forDur, Labels: r.Labels, Annotations: r.Annotations,
		})
	}
	body, err := yaml.Marshal(map[string]any{
		"apiVersion": 1,
		"groups": []any{map[string]any{
			"orgId": 1, "name": "couchwatch", "folder": "couchwatch", "interval": "5m", "rules": rules,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(fmt.Sprintf(generatedHeader, "manifests/"+watchdogRulesFile)+
		"# Grafana alerting provisioning for CHT Watchdog: copy into Grafana's provisioning/alerting/.\n"+
		"# The Prometheus data source uid is \"prometheus\": change datasourceUid if yours differs.\n"), body...)
}

var rangeSel = regexp.MustCompile(`\[([0-9]+[smhd])\]`)

// TestWatchdogRules: the Watchdog rule set passes promtool and its 5-minute unit tests,
// holds every alert of the main set (same severity and runbook), reads no range shorter
// than three scrape intervals, and the Grafana file carries the same alerts.
func TestWatchdogRules(t *testing.T) {
	pt := tool(t, "promtool", "/usr/bin")
	t.Logf("%s", run(t, nil, nil, pt, "check", "rules", watchdogRulesFile))
	t.Logf("%s", run(t, nil, nil, pt, "test", "rules", watchdogRulesTestFile))

	tests := string(readFile(t, watchdogRulesTestFile))
	if !strings.Contains(tests, "evaluation_interval: 5m") || strings.Count(tests, "- interval: ") != strings.Count(tests, "- interval: 5m") {
		t.Errorf("%s: every test must run at Watchdog's 5-minute interval", watchdogRulesTestFile)
	}
	watchdog := map[string]alertRule{}
	for _, r := range alertRules(t, watchdogRulesFile) {
		watchdog[r.Alert] = r
		for _, m := range rangeSel.FindAllStringSubmatch(r.Expr, -1) {
			d, err := model.ParseDuration(m[1])
			if err != nil || time.Duration(d) < 3*watchdogScrape {
				t.Errorf("%s: range [%s] is shorter than three 5-minute scrapes", r.Alert, m[1])
			}
		}
		if !strings.Contains(r.Expr, "_over_time(") && !strings.Contains(r.Expr, "increase(") {
			t.Errorf("%s: %q reads an instant vector: at a 5-minute scrape it finds nothing between samples", r.Alert, r.Expr)
		}
		if r.For != "" {
			d, err := model.ParseDuration(r.For)
			if err != nil || time.Duration(d)%watchdogScrape != 0 {
				t.Errorf("%s: for %s is not a whole number of scrapes", r.Alert, r.For)
			}
		}
		if !strings.Contains(tests, "alertname: "+r.Alert+"\n      exp_alerts:") {
			t.Errorf("%s: no firing case in %s", r.Alert, watchdogRulesTestFile)
		}
	}
	for _, r := range alertRules(t, rulesFile) {
		w, ok := watchdog[r.Alert]
		if !ok {
			t.Errorf("%s (in %s) has no Watchdog version in %s", r.Alert, rulesFile, watchdogRulesFile)
			continue
		}
		if w.Labels["severity"] != r.Labels["severity"] {
			t.Errorf("%s: severity %s for Watchdog, %s otherwise", r.Alert, w.Labels["severity"], r.Labels["severity"])
		}
		anchor := func(s string) string { a, _, _ := strings.Cut(s, ":"); return a }
		if anchor(w.Annotations["runbook"]) != anchor(r.Annotations["runbook"]) {
			t.Errorf("%s: runbook %q, want the same section as %q", r.Alert, w.Annotations["runbook"], r.Annotations["runbook"])
		}
	}
	if len(watchdog) != len(alertRules(t, rulesFile)) {
		t.Errorf("%d Watchdog alerts, %d in the main set", len(watchdog), len(alertRules(t, rulesFile)))
	}

	// The Grafana provisioning file: same alerts, same expressions, labels and annotations.
	var g struct {
		APIVersion int `json:"apiVersion"`
		Groups     []struct {
			Interval string `json:"interval"`
			Rules    []struct {
				UID         string            `json:"uid"`
				Title       string            `json:"title"`
				Condition   string            `json:"condition"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
				Data        []struct {
					RefID string         `json:"refId"`
					Model map[string]any `json:"model"`
				} `json:"data"`
			} `json:"rules"`
		} `json:"groups"`
	}
	mustYAML(t, readFile(t, genGrafanaAlerts), &g)
	if g.APIVersion != 1 || len(g.Groups) != 1 {
		t.Fatalf("%s: apiVersion %d, %d groups", genGrafanaAlerts, g.APIVersion, len(g.Groups))
	}
	var titles []string
	for _, r := range g.Groups[0].Rules {
		titles = append(titles, r.Title)
		w := watchdog[r.Title]
		if len(r.UID) > 40 || r.Condition != "B" || len(r.Data) != 2 {
			t.Errorf("%s: uid %q condition %q, %d queries", r.Title, r.UID, r.Condition, len(r.Data))
			continue
		}
		if r.Data[0].Model["expr"] != "("+w.Expr+") * 0 + 1" || fmt.Sprint(r.Labels) != fmt.Sprint(w.Labels) || fmt.Sprint(r.Annotations) != fmt.Sprint(w.Annotations) {
			t.Errorf("%s: Grafana rule differs from the Watchdog rule", r.Title)
		}
	}
	for name := range watchdog {
		if !slices.Contains(titles, name) {
			t.Errorf("%s missing from %s", name, genGrafanaAlerts)
		}
	}
}

// TestWatchdogScrapeSnippet: the scrape job passes promtool check config inside a
// Watchdog-like Prometheus configuration (5-minute global interval, the Watchdog rules),
// scrapes over TLS with basic auth, and its job name matches CouchwatchDown.
func TestWatchdogScrapeSnippet(t *testing.T) {
	pt := tool(t, "promtool", "/usr/bin")
	var snippet struct {
		ScrapeConfigs []map[string]any `json:"scrape_configs"`
	}
	mustYAML(t, readFile(t, watchdogScrapeFile), &snippet)
	if len(snippet.ScrapeConfigs) != 1 {
		t.Fatalf("%s: %d scrape configs", watchdogScrapeFile, len(snippet.ScrapeConfigs))
	}
	job := snippet.ScrapeConfigs[0]
	name, _ := job["job_name"].(string)
	if !regexp.MustCompile(`^(?:.*couchwatch.*)$`).MatchString(name) {
		t.Errorf("job_name %q does not match CouchwatchDown's job=~\".*couchwatch.*\"", name)
	}
	if job["scrape_interval"] != "5m" || job["scheme"] != "https" || get(job, "basic_auth", "username") == nil || get(job, "tls_config", "ca_file") == nil {
		t.Errorf("scrape job %v: want Watchdog's 5m, https, basic_auth and a CA", job)
	}
	for _, tgt := range asList(get(job, "static_configs").([]any)[0].(map[string]any)["targets"]) {
		if !strings.HasSuffix(tgt.(string), ":9155") {
			t.Errorf("target %v: want couchwatch's port 9155", tgt)
		}
	}

	// A Watchdog-like prometheus.yml around it; the files it names must exist for promtool.
	dir := t.TempDir()
	files := map[string]string{}
	for _, k := range []string{"basic_auth.password_file", "tls_config.ca_file"} {
		path := strings.Split(k, ".")
		local := dir + "/" + path[1]
		files[get(job, path...).(string)] = local
		get(job, path[0]).(map[string]any)[path[1]] = local
	}
	for _, local := range files {
		writeTestFile(t, local, "x\n")
	}
	rules, err := filepathAbs(watchdogRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := yaml.Marshal(map[string]any{
		"global":         map[string]any{"scrape_interval": "5m", "evaluation_interval": "5m"},
		"rule_files":     []any{rules},
		"scrape_configs": []any{job},
	})
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, dir+"/prometheus.yml", string(cfg))
	t.Logf("%s", run(t, nil, nil, pt, "check", "config", dir+"/prometheus.yml"))
}
