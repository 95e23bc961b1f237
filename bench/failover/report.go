package main

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/medic/couchwatch/bench/internal/benchkit"
)

type report struct {
	cfg     config
	started time.Time
	cells   []cell
	idle    []idleRow
}

// summary is the medians of one method x fault over its repetitions.
type summary struct {
	Method, Fault string
	Reps          int
	Detected      int // repetitions where the target left rotation
	Detect        time.Duration
	MinD, MaxD    time.Duration
	Failed, Sent  float64
	Stuck         float64
	OthersOut     float64
	AllOut        time.Duration // median time until every server was out, when they all were
	Statuses      map[int]int   // over every repetition
	MarkedDown    int           // repetitions where the target was marked down (maint or DOWN)
	DownAfter     time.Duration // median fault -> marked down, over those
	MinWeight     float64       // median lowest weight while in rotation
}

// summarize returns one summary per method x fault, in run order.
func (r *report) summarize() []summary {
	var out []summary
	index := map[string]int{}
	for _, c := range r.cells {
		k := c.Method + "/" + c.Fault
		if _, ok := index[k]; !ok {
			index[k] = len(out)
			out = append(out, summary{Method: c.Method, Fault: c.Fault, Statuses: map[int]int{}})
		}
	}
	for i := range out {
		s := &out[i]
		var ds []time.Duration
		var failed, sent, stuck, others []int
		var allOut, downs []time.Duration
		var weights []int
		for _, c := range r.cells {
			if c.Method != s.Method || c.Fault != s.Fault {
				continue
			}
			s.Reps++
			d := time.Duration(math.MaxInt64) // not detected sorts last
			if c.Detected {
				s.Detected++
				d = c.Detect
			}
			ds = append(ds, d)
			failed, sent, stuck = append(failed, c.Failed), append(sent, c.Sent), append(stuck, c.Stuck)
			others = append(others, len(c.OthersOut))
			if c.Detected && len(c.OthersOut) == nodes-1 {
				last := c.Detect
				for _, d := range c.OthersOut {
					last = max(last, d)
				}
				allOut = append(allOut, last)
			}
			for k, v := range c.Statuses {
				s.Statuses[k] += v
			}
			if c.MarkedDown {
				s.MarkedDown++
				downs = append(downs, c.DownAfter)
			}
			weights = append(weights, c.MinWeight)
		}
		sort.Slice(downs, func(a, b int) bool { return downs[a] < downs[b] })
		s.DownAfter = benchkit.Median(downs)
		s.MinWeight = benchkit.MedianInt(weights)
		sort.Slice(ds, func(a, b int) bool { return ds[a] < ds[b] })
		s.Detect = benchkit.Median(ds)
		if len(ds)%2 == 0 && (ds[len(ds)/2] == math.MaxInt64 || ds[len(ds)/2-1] == math.MaxInt64) {
			s.Detect = math.MaxInt64
		}
		s.MinD, s.MaxD = ds[0], ds[len(ds)-1]
		s.Failed, s.Sent = benchkit.MedianInt(failed), benchkit.MedianInt(sent)
		s.Stuck, s.OthersOut = benchkit.MedianInt(stuck), benchkit.MedianInt(others)
		s.AllOut = benchkit.Median(allOut)
	}
	return out
}

func (s summary) detected() bool { return s.Detect != math.MaxInt64 }

func fmtDetect(d, limit time.Duration) string {
	if d == math.MaxInt64 {
		return "> " + benchkit.Ms(limit) + " (not detected)"
	}
	return benchkit.Ms(d)
}

func fmtStatuses(m map[int]int) string {
	if len(m) == 0 {
		return ""
	}
	var keys []int
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var parts []string
	for _, k := range keys {
		name := fmt.Sprint(k)
		if k == 0 {
			name = "client error"
		}
		parts = append(parts, fmt.Sprintf("%s x%d", name, m[k]))
	}
	return strings.Join(parts, ", ")
}

func fmtNum(f float64) string {
	if f == math.Trunc(f) {
		return fmt.Sprintf("%.0f", f)
	}
	return fmt.Sprintf("%.1f", f)
}

func (r *report) write(w io.Writer) {
	cfg := r.cfg
	fmt.Fprintf(w, "# failover: %s, %s/%s, %d CPUs, HAProxy 2.6\n", r.started.UTC().Format("2006-01-02 15:04 MST"),
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	fmt.Fprintf(w, "\n%d nodes, node %d faulted, %.0f req/s open loop through the frontend, %d repetitions per cell (medians; min-max in brackets),\n",
		nodes, cfg.FaultNode, cfg.Rate, cfg.Reps)
	fmt.Fprintf(w, "fault at a random moment 0-500 ms after -pre; HAProxy state polled every %s; failed = non-200 or client error among the requests sent from %s before the fault until\n",
		cfg.Poll, cfg.Pre)
	fmt.Fprintf(w, "max(%s after it, %s after the server left rotation); stuck = took over 1 s (held by the hung node until Resume).\n",
		cfg.Window, cfg.Tail)

	sums := r.summarize()
	tuned := map[string]summary{}
	for _, s := range sums {
		if s.Method == tunedKey {
			tuned[s.Fault] = s
		}
	}
	t := benchkit.Table{Header: []string{"method", "fault", "out of rotation after", "vs tuned checks", "failed / sent", "failures (all reps)", "stuck >1s", "other servers taken out"}}
	var slow []summary
	for _, s := range sums {
		if slowFault(s.Fault) {
			slow = append(slow, s)
			continue
		}
		rng := ""
		if s.Reps > 1 && s.detected() {
			rng = fmt.Sprintf(" [%s-%s]", shortMs(s.MinD, cfg.MaxDetect), shortMs(s.MaxD, cfg.MaxDetect))
		}
		ratio := "-"
		if tu, ok := tuned[s.Fault]; ok && s.detected() && tu.detected() {
			ratio = benchkit.Ratio(float64(s.Detect), float64(tu.Detect))
		}
		t.Add(methodByKey(s.Method).Name, s.Fault, fmtDetect(s.Detect, cfg.MaxDetect)+rng, ratio,
			fmtNum(s.Failed)+" / "+fmtNum(s.Sent), fmtStatuses(s.Statuses), fmtNum(s.Stuck), fmtOthers(s))
	}
	if len(t.Rows) > 0 {
		t.Write(w)
	}
	if len(slow) > 0 {
		r.writeSlow(w, slow)
	}

	fmt.Fprintln(w, "\nMethods:")
	seen := map[string]bool{}
	for _, s := range sums {
		if !seen[s.Method] {
			seen[s.Method] = true
			m := methodByKey(s.Method)
			fmt.Fprintf(w, "- %s: %s\n", m.Name, m.Desc)
		}
	}

	if len(r.idle) > 0 {
		it := benchkit.Table{
			Title:  fmt.Sprintf("Idle cost over %s (3 idle nodes, no client load; CPU in %% of one core):", r.idle[0].Usage.Window.Round(time.Second)),
			Header: []string{"process", "CPU", "RSS", "RSS anon / file", "peak RSS", "requests/s to CouchDB"},
		}
		for _, row := range r.idle {
			rate := "-"
			if row.ReqRate > 0 {
				rate = fmt.Sprintf("%.1f", row.ReqRate)
			}
			it.Add(row.Name, fmt.Sprintf("%.2f %%", row.Usage.CPUPercent), fmt.Sprintf("%.1f MiB", row.Usage.RSSMiB),
				fmt.Sprintf("%.1f / %.1f MiB", row.Usage.AnonMiB, row.Usage.FileMiB), fmt.Sprintf("%.1f MiB", row.Usage.PeakMiB), rate)
		}
		it.Write(w)
	}
}

func shortMs(d, limit time.Duration) string {
	if d == math.MaxInt64 {
		return ">" + benchkit.Ms(limit)
	}
	return strings.TrimSuffix(benchkit.Ms(d), " ms")
}

func fmtOthers(s summary) string {
	out := fmtNum(s.OthersOut) + " of " + fmt.Sprint(nodes-1)
	if s.AllOut > 0 {
		out += ", all " + fmt.Sprint(nodes) + " out after " + benchkit.Ms(s.AllOut)
	}
	return out
}

// writeSlow is the table of the faults where the node keeps answering: every ejection
// is false.
func (r *report) writeSlow(w io.Writer, sums []summary) {
	cfg := r.cfg
	t := benchkit.Table{
		Title: fmt.Sprintf("\nFaults where the node keeps answering, watched for %s: slow-ramp = every reply of node %d delayed by %s rising to %s over %s, then staying;\n"+
			"load = real-shaped load (couchtest SetLoad(1), data requests +5 ms per request in flight). A false ejection = the node marked down\n"+
			"(maint, or HAProxy's check DOWN) in a trial; out of rotation also counts drain and weight 0; lowest weight = while in rotation (median).",
			cfg.SlowWindow, cfg.FaultNode, cfg.RampFrom, cfg.RampTo, cfg.RampOver),
		Header: []string{"method", "fault", "false ejections", "marked down after", "out of rotation", "lowest weight", "failed / sent", "failures (all reps)", "stuck >1s", "other servers taken out"},
	}
	for _, s := range sums {
		after := "-"
		if s.MarkedDown > 0 {
			after = benchkit.Ms(s.DownAfter)
		}
		out := fmt.Sprintf("%d of %d", s.Detected, s.Reps)
		weight := "-"
		if s.MinWeight >= 0 {
			weight = fmtNum(s.MinWeight)
		}
		t.Add(methodByKey(s.Method).Name, s.Fault, fmt.Sprintf("%d of %d", s.MarkedDown, s.Reps), after, out, weight,
			fmtNum(s.Failed)+" / "+fmtNum(s.Sent), fmtStatuses(s.Statuses), fmtNum(s.Stuck), fmtOthers(s))
	}
	t.Write(w)
}
