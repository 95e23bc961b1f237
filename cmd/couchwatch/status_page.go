package main

import (
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strings"
	"time"
)

// The status page is one self-contained HTML document: inline CSS and SVG, no script,
// no external font or image (CHT sites are often offline). It refreshes itself.
var statusTmpl = template.Must(template.New("status").Funcs(template.FuncMap{
	"ago":    agoText,
	"chart":  chart,
	"ms":     func(v float64) string { return fmt.Sprintf("%.1f ms", v) },
	"score":  func(v float64) string { return fmt.Sprintf("%.2f", v) },
	"clock":  func(t time.Time) string { return t.UTC().Format("15:04:05.000") },
	"weight": weightText,
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>couchwatch: {{len .Nodes}} nodes{{if .FailOpen}}, FAIL OPEN{{end}}</title>
<style>
body{font-family:sans-serif;margin:1em 1.5em;color:#222}h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.1em;margin:1.2em 0 .4em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top;font-size:.9em}
th{background:#f4f4f4}.up{background:#e6f6e6}.degraded{background:#fff6d5}.drain{background:#e3eefc}.down{background:#fbe1e1}.unknown{background:#eee}
.alert{color:#b00;font-weight:bold}.muted{color:#777}.stale{color:#b00}.mono{font-family:monospace}
.tl{max-height:28em;overflow-y:auto;display:inline-block}.k-verdict{color:#036}.k-command{color:#060}.k-refused,.k-fail_open,.k-shards{color:#b00}.k-budget{color:#a60}.k-kube{color:#606}
svg{display:block}
</style></head><body>
<h1>couchwatch</h1>
<p>mode <b>{{.Mode}}</b> · backend <b>{{.Backend}}</b> · last pass {{.LastPass}} · cluster n {{.ClusterN}} · min ready {{.MinReady}} · {{.Budget}} · kubernetes {{.Kube}} · {{.Version}}</p>
{{if .FailOpen}}<p class="alert" id="fail-open">FAIL OPEN: every node looks bad at once; every server is handed back to HAProxy (rule 1)</p>{{end}}
{{if .HAProxyErr}}<p class="alert">HAProxy runtime API: {{.HAProxyErr}}</p>{{end}}
{{if .Unmapped}}<p class="alert">CouchDB nodes without a HAProxy server: {{range .Unmapped}}{{.}} {{end}}</p>{{end}}
{{if .Unwatched}}<p>HAProxy servers without a CouchDB node (left alone): {{range .Unwatched}}{{.}} {{end}}</p>{{end}}

<h2>Nodes</h2>
<table id="nodes"><tr><th>node</th><th>verdict</th><th>evidence</th><th>load score · latency (last {{.ChartSpan}})</th><th>couchwatch wants</th><th>HAProxy reports</th></tr>
{{range .Nodes}}<tr class="{{.Verdict}}" id="node-{{.Server}}">
<td><b>{{.Node}}</b><br>CouchDB <span class="mono">{{if .ErlangName}}{{.ErlangName}}{{else}}(name not learnt){{end}}</span><br>HAProxy <span class="mono">{{if .Server}}{{.Server}}{{else}}(none){{end}}</span></td>
<td><b class="verdict">{{.Verdict}}</b><br>{{.Reason}}<br><span class="muted">since {{ago $.Now .Since}}</span>{{if .Rule}}<br><i class="rule">{{.Rule}}</i>{{end}}</td>
<td>{{with .Probe}}/_up: {{if .Current}}answered <b>{{.UpStatus}}</b> {{ago $.Now .LastProbe}}{{else}}<span class="stale"><b>no answer</b> {{ago $.Now .LastProbe}}{{if .Failure}}: {{.Failure}}{{end}}</span><br>last answer: {{if .UpStatus}}{{.UpStatus}} {{ago $.Now .LastAnswer}} (not current){{else}}never{{end}}{{end}}<br>latency EWMA {{ms .LatencyMS}}{{if .NoData}}<br><span class="alert">its shards are unavailable</span>{{end}}{{end}}
<br>load {{if .Load.Known}}<b>{{score .Load.Score}}</b>, driven by <b>{{.Load.Signal}}</b>{{if .Load.Limit}} = {{printf "%.4g" .Load.Value}} (saturates at {{printf "%.4g" .Load.Limit}}){{end}}{{else}}unknown{{end}}
{{if .Disagreement}}<br><span class="alert">missing from all_nodes of {{range .MissingFrom}}{{.}} {{end}}</span>{{end}}</td>
<td>{{chart .History $.Now}}</td>
<td>{{if .Want.State}}<b>{{.Want.State}}</b> {{weight .Want.Weight}}<br><span class="muted">{{.Want.Reason}}</span>{{else}}<span class="muted">nothing</span>{{end}}</td>
<td>{{if .HAProxy.Reported}}<b>{{.HAProxy.Admin}}</b> ({{.HAProxy.Op}}) weight {{.HAProxy.Weight}}<br>{{.HAProxy.Sessions}} sessions{{if .HAProxy.Check}} · check {{.HAProxy.Check}}{{end}}{{if .HAProxy.Pending}}<br><span class="muted">being set this pass</span>{{else if not .HAProxy.Matches}}<br><span class="alert">differs from want</span>{{end}}{{else}}<span class="muted">not read (agent mode or no answer)</span>{{end}}</td>
</tr>{{end}}</table>

<h2>Blast radius (n={{.ClusterN}})</h2>
<div id="blast">{{with .Blast}}{{if .Error}}<p class="alert">shard maps: {{.Error}}</p>{{end}}
{{if not .Known}}<p class="muted">shard maps not read yet</p>{{else if .Lost}}
<p class="alert">{{if .LoginsAffected}}LOGINS AFFECTED: part of _users is unavailable; users whose documents live there cannot log in. {{end}}{{len .Lost}} database(s) with unavailable shard ranges:</p>
<table><tr><th>database</th><th>unavailable ranges</th><th>on</th></tr>{{range .Lost}}<tr class="down"><td class="mono">{{.DB}}</td><td class="mono">{{len .Ranges}} of {{.Of}}: {{range .Ranges}}{{.}} {{end}}</td><td class="mono">{{range .Nodes}}{{.}} {{end}}</td></tr>{{end}}</table>
{{else}}<p>every shard range of the {{.DBs}} databases read is available{{if .Truncated}} (the first {{.DBs}} only: COUCHWATCH_SHARDS_MAX_DBS){{end}}</p>{{end}}
{{if .Known}}<p class="muted">shard maps read {{ago $.Now .ReadAt}} ({{.DBs}} databases{{if .Truncated}}, list truncated{{end}})</p>{{end}}{{end}}</div>

<h2>Decision timeline <span class="muted">(newest first, last {{len .Timeline}} of {{.TimelineTotal}})</span></h2>
<div class="tl"><table id="timeline"><tr><th>time (UTC)</th><th>kind</th><th>node</th><th>server</th><th>what</th><th>why</th></tr>
{{range .Timeline}}<tr class="k-{{.Kind}}"><td class="mono">{{clock .At}}</td><td>{{.Kind}}</td><td>{{.Node}}</td><td>{{.Server}}</td><td class="mono">{{.Text}}</td><td>{{.Reason}}</td></tr>
{{else}}<tr><td colspan="6" class="muted">nothing yet</td></tr>{{end}}</table></div>
<p><a href="/metrics">metrics</a> · <a href="/status.json">status.json</a> · <a href="/readyz">readyz</a></p>
</body></html>
`))

func (a *app) statusPage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = statusTmpl.Execute(w, a.status())
}

// agoText is how long ago t was, for people: "3.2 s ago", "never".
func agoText(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < 10*time.Second:
		return fmt.Sprintf("%.1f s ago", d.Seconds())
	case d < 2*time.Minute:
		return fmt.Sprintf("%.0f s ago", d.Seconds())
	case d < 2*time.Hour:
		return fmt.Sprintf("%.0f min ago", d.Minutes())
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func weightText(w int) string {
	if w < 0 {
		return ""
	}
	return fmt.Sprintf("weight %d", w)
}

// Chart geometry: two stacked panels (load score 0-1, latency 0-max) over historySpan.
const (
	chartW, chartH = 260, 34
	chartGap       = 14
)

// chart draws a node's load score and latency as inline SVG. Only numbers reach the
// markup, so it is safe to mark as HTML. Gaps (unknown samples) break the line.
func chart(samples []Sample, now time.Time) template.HTML {
	var b strings.Builder
	total := 2*chartH + 2*chartGap
	fmt.Fprintf(&b, `<svg class="chart" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="load score and latency, last %s">`,
		chartW, total, chartW, total, historySpan)
	maxLat := 1.0
	for _, s := range samples {
		maxLat = math.Max(maxLat, s.LatencyMS)
	}
	maxLat = niceCeil(maxLat)
	last := func(f func(Sample) float64) string {
		for i := len(samples) - 1; i >= 0; i-- {
			if v := f(samples[i]); v >= 0 {
				return fmt.Sprintf("%.3g", v)
			}
		}
		return "?"
	}
	panel := func(top int, label string, f func(Sample) float64, ymax float64, color string) {
		fmt.Fprintf(&b, `<text x="0" y="%d" font-size="10" fill="#555">%s</text>`, top+10, label)
		y0 := top + chartGap
		fmt.Fprintf(&b, `<rect x="0" y="%d" width="%d" height="%d" fill="#fafafa" stroke="#ddd"/>`, y0, chartW, chartH)
		var pts []string
		flush := func() {
			if len(pts) == 1 {
				pts = append(pts, pts[0])
			}
			if len(pts) > 0 {
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, color, strings.Join(pts, " "))
			}
			pts = pts[:0]
		}
		for _, s := range samples {
			v := f(s)
			if v < 0 {
				flush()
				continue
			}
			x := float64(chartW) * (1 - now.Sub(s.At).Seconds()/historySpan.Seconds())
			y := float64(y0+chartH) - float64(chartH)*math.Min(v/ymax, 1)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", math.Max(x, 0), y))
		}
		flush()
		// The newest known point as a dot: one sample is visible too.
		for i := len(samples) - 1; i >= 0; i-- {
			if v := f(samples[i]); v >= 0 {
				x := float64(chartW) * (1 - now.Sub(samples[i].At).Seconds()/historySpan.Seconds())
				y := float64(y0+chartH) - float64(chartH)*math.Min(v/ymax, 1)
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2" fill="%s"/>`, math.Min(math.Max(x, 2), chartW-2), y, color)
				break
			}
		}
	}
	panel(0, "load score (0-1): "+last(func(s Sample) float64 { return s.Score }), func(s Sample) float64 { return s.Score }, 1, "#c60")
	panel(chartH+chartGap, fmt.Sprintf("latency ms (0-%g): %s", maxLat, last(func(s Sample) float64 { return s.LatencyMS })),
		func(s Sample) float64 { return s.LatencyMS }, maxLat, "#06c")
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // #nosec: numbers and fixed text only
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}
