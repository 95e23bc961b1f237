// Package promreg is how every couchwatch package registers its metric families: all of
// them, each failure an error that names the family (a panic would take the sidecar
// down; a silent failure would leave a dashboard blank).
package promreg

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers every collector on reg and returns every failure, joined. A nil reg
// registers nothing (metrics kept for a caller that does not export them).
func Register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	var errs []error
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			errs = append(errs, fmt.Errorf("register %s: %w", names(c), err))
		}
	}
	return errors.Join(errs...)
}

var fqName = regexp.MustCompile(`fqName: "([^"]*)"`)

// names lists the families c describes, for error messages.
func names(c prometheus.Collector) string {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	var out []string
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			out = append(out, m[1])
		}
	}
	if len(out) == 0 {
		return "collector"
	}
	if len(out) > 3 {
		return fmt.Sprintf("%s and %d more", strings.Join(out[:3], ", "), len(out)-3)
	}
	return strings.Join(out, ", ")
}
