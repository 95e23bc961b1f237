// Command faults measures, in one run, how couchwatch handles the faults measured on a
// real CouchDB 3.4.3 cluster (DESIGN.md §5, issue 9), on the faithful simulator behind a
// real HAProxy, each against a baseline in the same run:
//
//	go run ./bench/faults [-tick 20s] [-spiky 2m] [-scenarios auth,spiky] ...
//
// Scenarios (scenarios.go): the auth-coupled hang (the node holding the admin's _users
// shard hangs: which servers went out, when, and the requests that failed through
// HAProxy), and weight changes per server during a spiky load. Other files add their
// own rows to the scenario list. See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/medic/couchwatch/bench/internal/benchkit"
)

type config struct {
	Tick          time.Duration // the cluster's net_ticktime (real: 60 s)
	Rate          float64       // requests per second through HAProxy
	ClientTimeout time.Duration
	After         time.Duration // observed after net_ticktime ends the hang's coupling
	Spiky         time.Duration // length of the spiky load
	Poll          time.Duration // HAProxy state poll interval
	Scenarios     []string
}

func defaultConfig() config {
	return config{Tick: 20 * time.Second, Rate: 20, ClientTimeout: 60 * time.Second, After: 5 * time.Second,
		Spiky: 2 * time.Minute, Poll: 10 * time.Millisecond, Scenarios: nil}
}

func (c config) validate() error {
	var errs []error
	if c.Tick <= 0 || c.Tick > 5*time.Minute || c.After < 0 || c.After > 5*time.Minute {
		errs = append(errs, errors.New("need 0 < -tick <= 5m and 0 <= -after <= 5m"))
	}
	if c.Rate <= 0 || c.Rate > 1000 || c.ClientTimeout <= 0 || c.ClientTimeout > 10*time.Minute {
		errs = append(errs, errors.New("need 0 < -rate <= 1000 and 0 < -client-timeout <= 10m"))
	}
	if c.Spiky <= 0 || c.Spiky > 30*time.Minute || c.Poll <= 0 || c.Poll > time.Second {
		errs = append(errs, errors.New("need 0 < -spiky <= 30m and 0 < -poll <= 1s"))
	}
	known := map[string]bool{}
	for _, s := range scenarios() {
		known[s.Name] = true
	}
	for _, s := range c.Scenarios {
		if !known[s] {
			errs = append(errs, fmt.Errorf("unknown scenario %q", s))
		}
	}
	return errors.Join(errs...)
}

func main() { os.Exit(mainErr()) }

func mainErr() int {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("faults", flag.ContinueOnError)
	fs.DurationVar(&cfg.Tick, "tick", cfg.Tick, "net_ticktime of the simulated cluster (real CouchDB: 60s)")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "requests per second through HAProxy during the auth-coupled hang")
	fs.DurationVar(&cfg.ClientTimeout, "client-timeout", cfg.ClientTimeout, "client timeout of one request")
	fs.DurationVar(&cfg.After, "after", cfg.After, "observed after net_ticktime has ended the coupling")
	fs.DurationVar(&cfg.Spiky, "spiky", cfg.Spiky, "length of the spiky load")
	fs.DurationVar(&cfg.Poll, "poll", cfg.Poll, "HAProxy state poll interval")
	list := fs.String("scenarios", "", "comma list of scenarios (default: all)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	cfg.Scenarios = append(cfg.Scenarios, benchkit.SplitList(*list)...)
	return benchkit.Run("faults", cfg.validate, func(ctx context.Context) error {
		_, err := run(ctx, cfg, os.Stdout, os.Stderr)
		return err
	})
}

// section is what one scenario prints: a title, what was done, a table and notes.
type section struct {
	Title string
	Intro string
	Table benchkit.Table
	Notes []string
}

func (s section) write(w io.Writer) {
	fmt.Fprintf(w, "## %s\n\n%s\n", s.Title, s.Intro)
	s.Table.Write(w)
	for _, n := range s.Notes {
		fmt.Fprintln(w, "- "+n)
	}
	fmt.Fprintln(w)
}

// run builds couchwatch once and runs every selected scenario in turn.
func run(ctx context.Context, cfg config, out, progress io.Writer) ([]section, error) {
	dir, err := os.MkdirTemp("", "couchwatch-bench-faults-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	bin, err := benchkit.BuildCouchwatch(ctx, dir)
	if err != nil {
		return nil, err
	}
	started := time.Now()
	fmt.Fprintf(out, "# bench/faults (%s UTC)\n\n", started.UTC().Format("2006-01-02 15:04"))
	var secs []section
	for _, s := range scenarios() {
		if len(cfg.Scenarios) > 0 && !contains(cfg.Scenarios, s.Name) {
			continue
		}
		fmt.Fprintf(progress, "scenario %s...\n", s.Name)
		sec, err := s.Run(ctx, cfg, bin, progress)
		if err != nil {
			return secs, fmt.Errorf("%s: %w", s.Name, err)
		}
		sec.write(out)
		secs = append(secs, sec)
	}
	fmt.Fprintf(out, "Total %s.\n", time.Since(started).Round(time.Second))
	return secs, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}
