// Command failover measures how fast each way of health-checking CouchDB takes a
// crashed or hung node out of HAProxy's rotation, and how many requests fail meanwhile,
// all in one run against the same simulated cluster and a real HAProxy 2.6:
//
//	go run ./bench/failover [-reps 3] [-rate 50] [-idle 60s] ...
//
// For each method and fault it starts a fresh 3-node couchtest cluster and a fresh
// HAProxy with CHT's backend (leastconn, retries 5, retry-on all-retryable-errors,
// option redispatch, CHT's huge timeouts), sends a bounded open-loop request stream
// through the frontend, injects the fault on one node and polls HAProxy's own view
// ("show servers state") every few milliseconds until that server is out of rotation
// (not running, maint/drain, or weight 0). Two more faults leave the node answering: a
// latency that rises gradually (slow-ramp) and real-shaped load; there the poller counts
// false ejections (the node marked down) over a fixed window. Then it measures couchwatch's and HAProxy's
// CPU and RSS with 3 idle nodes over a window. See bench/README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/medic/couchwatch/bench/internal/benchkit"
)

func main() {
	os.Exit(mainErr())
}

func mainErr() int {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("failover", flag.ContinueOnError)
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "offered requests per second through HAProxy")
	fs.IntVar(&cfg.Reps, "reps", cfg.Reps, "repetitions of each method x fault cell (the table shows medians)")
	fs.DurationVar(&cfg.Pre, "pre", cfg.Pre, "load before the fault")
	fs.DurationVar(&cfg.Window, "window", cfg.Window, "load keeps running at least this long after the fault (failed requests are counted over it)")
	fs.DurationVar(&cfg.Tail, "tail", cfg.Tail, "load keeps running at least this long after the server left rotation")
	fs.DurationVar(&cfg.MaxDetect, "max-detect", cfg.MaxDetect, "give up waiting for a method after this long")
	fs.DurationVar(&cfg.Poll, "poll", cfg.Poll, "interval between reads of HAProxy's server states")
	fs.DurationVar(&cfg.ClientTimeout, "client-timeout", cfg.ClientTimeout, "client timeout of one request (long enough for requests stuck on a hung node to finish after Resume)")
	fs.DurationVar(&cfg.Idle, "idle", cfg.Idle, "window of the idle CPU/RSS measurement (0 skips it)")
	fs.IntVar(&cfg.FaultNode, "node", cfg.FaultNode, "which node (1-based) is faulted")
	fs.DurationVar(&cfg.SlowWindow, "slow-window", cfg.SlowWindow, "how long a slow-ramp or load fault is watched for false ejections")
	fs.DurationVar(&cfg.RampFrom, "ramp-from", cfg.RampFrom, "slow-ramp: added latency of every reply at the start")
	fs.DurationVar(&cfg.RampTo, "ramp-to", cfg.RampTo, "slow-ramp: added latency at the end of the ramp, where it stays")
	fs.DurationVar(&cfg.RampOver, "ramp-over", cfg.RampOver, "slow-ramp: duration of the ramp")
	methods := fs.String("methods", strings.Join(cfg.Methods, ","), "methods to run: "+strings.Join(allMethodKeys(), ","))
	faults := fs.String("faults", strings.Join(cfg.Faults, ","), "faults to inject: "+strings.Join(allFaults, ","))
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	cfg.Methods = benchkit.SplitList(*methods)
	cfg.Faults = benchkit.SplitList(*faults)
	return benchkit.Run("failover", cfg.validate, func(ctx context.Context) error {
		_, err := run(ctx, cfg, os.Stdout, os.Stderr)
		return err
	})
}

// run measures every cell, prints the tables to out (progress to progress) and
// returns the report.
func run(ctx context.Context, cfg config, out, progress io.Writer) (*report, error) {
	dir, err := os.MkdirTemp("", "couchwatch-bench-failover-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	b := &bench{cfg: cfg, progress: progress}
	if b.bin, err = buildCouchwatch(ctx, dir); err != nil {
		return nil, err
	}
	rep := &report{cfg: cfg, started: time.Now()}
	for _, key := range cfg.Methods {
		m := methodByKey(key)
		for _, fault := range cfg.Faults {
			for rep_ := range cfg.Reps {
				c, err := b.runCell(ctx, m, fault)
				if err != nil {
					return nil, fmt.Errorf("%s / %s rep %d: %w", m.Name, fault, rep_+1, err)
				}
				fmt.Fprintf(progress, "%-28s %-9s rep %d: %s\n", m.Name, fault, rep_+1, c)
				rep.cells = append(rep.cells, c)
			}
		}
	}
	if cfg.Idle > 0 {
		fmt.Fprintf(progress, "idle resource use over %s ...\n", cfg.Idle)
		if rep.idle, err = b.measureIdle(ctx); err != nil {
			return nil, fmt.Errorf("idle measurement: %w", err)
		}
	}
	rep.write(out)
	return rep, nil
}
