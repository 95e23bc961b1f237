package envconf

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
)

type inner struct {
	Rise   int           `env:"T_RISE, default=2" desc:"good probes"`
	Every  time.Duration `env:"T_EVERY, default=500ms" desc:"interval"`
	hidden float64       // unexported, untagged: walked past
}

var _ = inner{hidden: 1}

type outer struct {
	Name  string  `env:"T_NAME, default=a,b" desc:"a list"`
	On    bool    `env:"T_ON" desc:"switch"`
	Ratio float64 `env:"T_RATIO, default=0.5" desc:"ratio"`
	Inner inner
	Plain string // no tag: not a variable
	At    time.Time
}

func TestVars(t *testing.T) {
	vars, err := Vars(&outer{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vars {
		got = append(got, v.Name+"="+v.Default+":"+v.Kind+":"+v.Field)
	}
	want := "T_NAME=a,b:string:Name T_ON=:bool:On T_RATIO=0.5:float:Ratio T_RISE=2:int:Inner.Rise T_EVERY=500ms:duration:Inner.Every"
	if strings.Join(got, " ") != want {
		t.Fatalf("vars\n got %s\nwant %s", strings.Join(got, " "), want)
	}
}

func TestVarsRejectsBadDeclarations(t *testing.T) {
	type twice struct {
		A bool `env:"T_DRY_RUN" desc:"one"`
		B struct {
			DryRun bool `env:"T_DRY_RUN" desc:"two"`
		}
	}
	type undocumented struct {
		A int `env:"T_A, default=1"`
	}
	tests := []struct {
		name   string
		target any
		want   string
	}{
		{"declared twice", &twice{}, "envconf: T_DRY_RUN is declared twice (fields A and B.DryRun)"},
		{"no desc", &undocumented{}, "envconf: T_A (field A) has no desc tag"},
		{"not a struct", new(int), "envconf: *int is not a struct"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Vars(tt.target)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v, want %s", err, tt.want)
			}
		})
	}
}

// Every malformed value is named at once, and each keeps its default so the rest loads.
func TestProcessReportsEveryTypeError(t *testing.T) {
	var c outer
	err := Process(context.Background(), &c, envconfig.MapLookuper(map[string]string{
		"T_RISE": "abc", "T_EVERY": "fast", "T_ON": "maybe", "T_RATIO": "0.9", "T_NAME": "x",
	}))
	want := `T_ON: "maybe" is not a valid bool
T_RISE: "abc" is not a valid int
T_EVERY: "fast" is not a valid duration`
	if err == nil || err.Error() != want {
		t.Fatalf("err =\n%v\nwant\n%s", err, want)
	}
	if c.Inner.Rise != 2 || c.Inner.Every != 500*time.Millisecond || c.On {
		t.Errorf("bad values did not keep their defaults: %+v", c)
	}
	if c.Ratio != 0.9 || c.Name != "x" {
		t.Errorf("good values not loaded: %+v", c)
	}
}

// The type check is go-envconfig's own parser: what it accepts, Process accepts.
func TestProcessAgreesWithEnvconfig(t *testing.T) {
	for _, raw := range []string{"0x10", "010", "-3", "+4", " 5", "1e3", "9223372036854775808"} {
		var direct, ours outer
		l := envconfig.MapLookuper(map[string]string{"T_RISE": raw})
		derr := envconfig.ProcessWith(context.Background(), &envconfig.Config{Target: &direct, Lookuper: l})
		oerr := Process(context.Background(), &ours, l)
		if (derr == nil) != (oerr == nil) || direct.Inner.Rise != ours.Inner.Rise && derr == nil {
			t.Errorf("T_RISE=%q: go-envconfig %v (%d), Process %v (%d)", raw, derr, direct.Inner.Rise, oerr, ours.Inner.Rise)
		}
	}
}

func TestDefaults(t *testing.T) {
	c := Defaults[outer]()
	if c.Name != "a,b" || c.Ratio != 0.5 || c.Inner.Rise != 2 || c.Inner.Every != 500*time.Millisecond || c.On {
		t.Fatalf("defaults = %+v", c)
	}
}
