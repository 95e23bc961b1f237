package checks

import (
	"errors"
	"fmt"
	"time"
)

// Config sets how often and how hard nodes are probed. Field tags carry the environment
// variables and defaults; cmd/couchwatch loads them with go-envconfig.
type Config struct {
	Interval           time.Duration `env:"COUCHWATCH_PROBE_INTERVAL, default=500ms"`
	Timeout            time.Duration `env:"COUCHWATCH_PROBE_TIMEOUT, default=500ms"`
	FastInterval       time.Duration `env:"COUCHWATCH_PROBE_FAST_INTERVAL, default=100ms"`
	Rise               int           `env:"COUCHWATCH_RISE, default=2"`
	Fall               int           `env:"COUCHWATCH_FALL, default=2"`
	Hold               bool          `env:"COUCHWATCH_HOLD_CONNECTION, default=true"`
	SystemInterval     time.Duration `env:"COUCHWATCH_SYSTEM_INTERVAL, default=5s"`
	SystemTimeout      time.Duration `env:"COUCHWATCH_SYSTEM_TIMEOUT, default=2s"`
	MembershipInterval time.Duration `env:"COUCHWATCH_MEMBERSHIP_INTERVAL, default=5s"`
	Load               LoadConfig
}

// Validate reports every problem at once, each naming its variable.
func (c Config) Validate() error {
	var errs []error
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be > 0, got %s", name, d))
		}
	}
	positive("COUCHWATCH_PROBE_INTERVAL", c.Interval)
	positive("COUCHWATCH_PROBE_TIMEOUT", c.Timeout)
	positive("COUCHWATCH_PROBE_FAST_INTERVAL", c.FastInterval)
	positive("COUCHWATCH_SYSTEM_INTERVAL", c.SystemInterval)
	positive("COUCHWATCH_SYSTEM_TIMEOUT", c.SystemTimeout)
	positive("COUCHWATCH_MEMBERSHIP_INTERVAL", c.MembershipInterval)
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
