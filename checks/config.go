package checks

import (
	"errors"
	"fmt"
	"time"
)

// Config sets how often and how hard nodes are probed. Field tags carry the environment
// variables and defaults; cmd/couchwatch loads them with go-envconfig.
type Config struct {
	Interval time.Duration `env:"COUCHWATCH_PROBE_INTERVAL, default=250ms" desc:"interval between /_up probes of a node"`
	// Timeout caps each node's /_up deadline, which is learnt from the node's own recent
	// answers (4x the second slowest of the last 16) and never below TimeoutMin.
	Timeout            time.Duration `env:"COUCHWATCH_PROBE_TIMEOUT, default=1s" desc:"longest deadline of one /_up probe: each node's deadline is learnt from its own answers (4x the second slowest of the last 16), capped by this"`
	TimeoutMin         time.Duration `env:"COUCHWATCH_PROBE_TIMEOUT_MIN, default=75ms" desc:"shortest deadline of one /_up probe (a fast node's learnt deadline never goes below it)"`
	FastInterval       time.Duration `env:"COUCHWATCH_PROBE_FAST_INTERVAL, default=100ms" desc:"interval between probes while a node changes state (like HAProxy's fastinter)"`
	Rise               int           `env:"COUCHWATCH_RISE, default=2" desc:"consecutive good probes before a node is up"`
	Fall               int           `env:"COUCHWATCH_FALL, default=2" desc:"consecutive failed probes before a node is down"`
	Hold               bool          `env:"COUCHWATCH_HOLD_CONNECTION, default=true" desc:"watch the /_up probe's kept-alive connection between probes and re-probe at once when the node closes it (notices a crash in milliseconds)"`
	SystemInterval     time.Duration `env:"COUCHWATCH_SYSTEM_INTERVAL, default=5s" desc:"interval between saturation samples (_system and _active_tasks)"`
	SystemTimeout      time.Duration `env:"COUCHWATCH_SYSTEM_TIMEOUT, default=2s" desc:"deadline of saturation and membership calls"`
	MembershipInterval time.Duration `env:"COUCHWATCH_MEMBERSHIP_INTERVAL, default=5s" desc:"interval between /_membership comparisons"`
	Load               LoadConfig
}

// Validate reports every problem at once, each naming its variable.
func (c Config) Validate() error {
	var errs []error
	// Upper bounds catch a slip of the unit (1000000h): a probe that waits longer than a
	// minute, or an interval of hours, no longer watches anything.
	within := func(name string, d, most time.Duration) {
		if d <= 0 || d > most {
			errs = append(errs, fmt.Errorf("%s must be within (0, %s], got %s", name, fmtDuration(most), d))
		}
	}
	within("COUCHWATCH_PROBE_INTERVAL", c.Interval, time.Minute)
	within("COUCHWATCH_PROBE_TIMEOUT", c.Timeout, time.Minute)
	within("COUCHWATCH_PROBE_TIMEOUT_MIN", c.TimeoutMin, time.Minute)
	if c.TimeoutMin > c.Timeout {
		errs = append(errs, fmt.Errorf("COUCHWATCH_PROBE_TIMEOUT_MIN (%s) must not exceed COUCHWATCH_PROBE_TIMEOUT (%s)", c.TimeoutMin, c.Timeout))
	}
	within("COUCHWATCH_PROBE_FAST_INTERVAL", c.FastInterval, time.Minute)
	within("COUCHWATCH_SYSTEM_INTERVAL", c.SystemInterval, time.Hour)
	within("COUCHWATCH_SYSTEM_TIMEOUT", c.SystemTimeout, time.Minute)
	within("COUCHWATCH_MEMBERSHIP_INTERVAL", c.MembershipInterval, time.Hour)
	if c.Rise < 1 || c.Rise > 100 {
		errs = append(errs, fmt.Errorf("COUCHWATCH_RISE must be 1..100, got %d", c.Rise))
	}
	if c.Fall < 1 || c.Fall > 100 {
		errs = append(errs, fmt.Errorf("COUCHWATCH_FALL must be 1..100, got %d", c.Fall))
	}
	if err := c.Load.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// fmtDuration writes whole minutes and hours as people do ("1m", "1h", not "1m0s").
func fmtDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}
