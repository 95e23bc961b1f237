// Package envconf is the one place couchwatch's environment variables are defined: each
// is a struct field whose tags give its name and default (go-envconfig's `env` tag) and
// its meaning (`desc`). Loading, defaults, -help and docs/config.md all read those tags,
// so adding a variable is adding one field:
//
//	Rise int `env:"COUCHWATCH_RISE, default=2" desc:"consecutive good probes before a node is up"`
//
// Structs without an `env` tag are walked (each package's Config is embedded in cmd's).
package envconf

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"
)

// Var is one environment variable, as its struct tags declare it.
type Var struct {
	Name    string
	Default string // as written in the tag; "" when there is none
	Desc    string
	Kind    string // duration, int, float, bool or string
	Field   string // Go path of the field, e.g. "Checks.Rise"

	typ reflect.Type
}

// Vars lists the variables of *target (or target, a struct), in field order. It fails on a
// tag go-envconfig would reject, a variable declared twice or one without a desc tag.
func Vars(target any) ([]Var, error) {
	t := reflect.TypeOf(target)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("envconf: %T is not a struct", target)
	}
	var (
		out  []Var
		errs []error
		seen = map[string]string{}
	)
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag, ok := f.Tag.Lookup("env")
			if !ok || tag == "" {
				if f.IsExported() && f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Time]() {
					walk(f.Type, path+f.Name+".")
				}
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			v := Var{Name: strings.TrimSpace(name), Desc: f.Tag.Get("desc"), Kind: kind(f.Type),
				Field: path + f.Name, typ: f.Type}
			// As in go-envconfig, default= takes the rest of the tag, commas included.
			if i := strings.Index(opts, "default="); i >= 0 {
				v.Default = opts[i+len("default="):]
			}
			switch {
			case v.Name == "":
				errs = append(errs, fmt.Errorf("envconf: field %s: empty variable name", v.Field))
			case seen[v.Name] != "":
				errs = append(errs, fmt.Errorf("envconf: %s is declared twice (fields %s and %s)", v.Name, seen[v.Name], v.Field))
			case v.Desc == "":
				errs = append(errs, fmt.Errorf("envconf: %s (field %s) has no desc tag", v.Name, v.Field))
			}
			seen[v.Name] = v.Field
			out = append(out, v)
		}
	}
	walk(t, "")
	return out, errors.Join(errs...)
}

func kind(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "duration"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "int"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "float"
	case t.Kind() == reflect.Bool:
		return "bool"
	default:
		return "string"
	}
}

// Process fills *target from l through go-envconfig, defaults from the tags. Unlike
// go-envconfig alone, a value that does not parse does not stop the rest: every such
// variable is reported, by name, and keeps its default, so the caller's Validate can go on
// to name every other problem too.
func Process(ctx context.Context, target any, l envconfig.Lookuper) error {
	vars, err := Vars(target)
	if err != nil {
		return err
	}
	var errs []error
	bad := map[string]bool{}
	for _, v := range vars {
		raw, ok := l.Lookup(v.Name)
		if !ok {
			continue
		}
		if err := parse(ctx, v, raw); err != nil {
			// Only numbers, durations and booleans can fail here, never a string, so the
			// value (no secret) is quoted to say what was wrong.
			errs = append(errs, fmt.Errorf("%s: %q is not a valid %s", v.Name, raw, v.Kind))
			bad[v.Name] = true
		}
	}
	hide := envconfig.LookuperFunc(func(key string) (string, bool) {
		if bad[key] {
			return "", false
		}
		return l.Lookup(key)
	})
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: target, Lookuper: hide}); err != nil {
		errs = append(errs, fmt.Errorf("read environment: %w", err))
	}
	return errors.Join(errs...)
}

// parse decodes raw as v's field would be decoded, by go-envconfig itself on a one-field
// struct of the same type, so this check never disagrees with the real load.
func parse(ctx context.Context, v Var, raw string) error {
	st := reflect.StructOf([]reflect.StructField{{Name: "V", Type: v.typ, Tag: reflect.StructTag(`env:"` + v.Name + `"`)}})
	return envconfig.ProcessWith(ctx, &envconfig.Config{
		Target:   reflect.New(st).Interface(),
		Lookuper: envconfig.MapLookuper(map[string]string{v.Name: raw}),
	})
}

// Defaults returns a T holding its tags' defaults, for code that builds a package's
// Config without an environment (tests, benchmarks, zero fields). T's tags are fixed at
// compile time and TestDefaults-style tests load each Config, so a failure here is a
// programming error: it panics, like regexp.MustCompile.
func Defaults[T any]() T {
	var c T
	if err := envconfig.ProcessWith(context.Background(), &envconfig.Config{
		Target: &c, Lookuper: envconfig.MapLookuper(nil),
	}); err != nil {
		panic(fmt.Sprintf("envconf: defaults of %T: %v", c, err))
	}
	return c
}
