package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
)

func TestParseInterleaved(t *testing.T) {
	testCases := []struct {
		args []string
		pos  []string
		n    int
	}{
		{args: nil, pos: nil},
		{args: []string{"a", "-n", "3", "b"}, pos: []string{"a", "b"}, n: 3},
		{args: []string{"-n=2", "a"}, pos: []string{"a"}, n: 2},
		{args: []string{"a", "--", "-n", "-x"}, pos: []string{"a", "-n", "-x"}},
		{args: []string{"-n", "1", "--", "-x", "-y"}, pos: []string{"-x", "-y"}, n: 1},
		{args: []string{"--", "--"}, pos: []string{"--"}},
		{args: []string{"-", "a"}, pos: []string{"-", "a"}},
	}
	for _, tc := range testCases {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		n := fs.Int("n", 0, "")
		pos, err := ParseInterleaved(fs, tc.args)
		if err != nil || !slices.Equal(pos, tc.pos) || *n != tc.n {
			t.Errorf("%q: %q, n=%d, %v; want %q, n=%d", tc.args, pos, *n, err, tc.pos, tc.n)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(&bytes.Buffer{})
	if _, err := ParseInterleaved(fs, []string{"a", "-x"}); err == nil {
		t.Error("unknown flag after an argument: no error")
	}
}

func program(t *testing.T) (*Program, *bytes.Buffer, *bytes.Buffer, *Globals, *[]string) {
	var stdout, stderr bytes.Buffer
	var g Globals
	var got []string
	force := false
	deploy := &Command{Name: "deploy", Args: "[NAME...]", Short: "deploy things", Long: "Deploy each NAME."}
	deploy.Flags.BoolVar(&force, "force", false, "deploy even if deployed")
	deploy.Run = func(_ context.Context, args []string) error {
		got = args
		switch {
		case slices.Contains(args, "bad"):
			return &UsageError{Err: errors.New("bad name"), Hints: []string{"use a good one"}}
		case slices.Contains(args, "fail"):
			return errors.New("it broke")
		case slices.Contains(args, "reported"):
			return ErrReported
		}
		return nil
	}
	p := &Program{
		Name: "prog", Summary: "prog does things.", Footer: "Exit status: 0 done.",
		Commands: []*Command{deploy},
		Stdout:   &stdout, Stderr: &stderr,
		Start: func(gl Globals) { g = gl },
	}
	return p, &stdout, &stderr, &g, &got
}

func TestRun(t *testing.T) {
	testCases := []struct {
		desc   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{desc: "no command", code: 2, stderr: "Usage:\n  prog [--config FILE]"},
		{desc: "help flag", args: []string{"-h"}, stdout: "deploy [NAME...]  deploy things"},
		{desc: "help command", args: []string{"help"}, stdout: "Exit status: 0 done.\nRun 'prog help COMMAND'"},
		{desc: "help deploy", args: []string{"help", "deploy"}, stdout: "Usage: prog deploy [flags] [NAME...]\n\nDeploy each NAME.\n\nFlags:\n  -force"},
		{desc: "deploy --help", args: []string{"deploy", "--help"}, stdout: "Usage: prog deploy [flags] [NAME...]"},
		{desc: "help unknown", args: []string{"help", "nope"}, code: 2, stderr: `prog: error: unknown command "nope"`},
		{desc: "typo", args: []string{"deplyo"}, code: 2, stderr: "prog: error: unknown command \"deplyo\"\nprog: hint: did you mean 'prog deploy'?\n"},
		{desc: "unknown", args: []string{"zzzzzzzz"}, code: 2, stderr: "prog: hint: run 'prog help' for the list of commands\n"},
		{desc: "bad flag", args: []string{"deploy", "a", "--frce"}, code: 2, stderr: "prog: error: flag provided but not defined: -frce\nprog: hint: run 'prog deploy --help' for its flags\n"},
		{desc: "bad global flag", args: []string{"--confg", "x", "deploy"}, code: 2, stderr: "prog: error: flag provided but not defined: -confg\n"},
		{desc: "usage error", args: []string{"deploy", "bad"}, code: 2, stderr: "prog: error: bad name\nprog: hint: use a good one\n"},
		{desc: "failure", args: []string{"deploy", "fail"}, code: 1, stderr: "prog: error: it broke\n"},
		{desc: "reported", args: []string{"deploy", "reported"}, code: 1},
		{desc: "ok", args: []string{"deploy", "a", "--force", "b"}},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			p, stdout, stderr, _, _ := program(t)
			code := p.Run(t.Context(), tc.args)
			if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("exit %d\nstdout %q\nstderr %q\nwant %d, %q, %q", code, stdout, stderr, tc.code, tc.stdout, tc.stderr)
			}
			if tc.stderr == "" && stderr.Len() > 0 {
				t.Errorf("stderr %q, want nothing", stderr)
			}
			if n := strings.Count(stderr.String(), "error:"); n > 1 {
				t.Errorf("error reported %d times: %q", n, stderr)
			}
		})
	}
}

func TestGlobals(t *testing.T) {
	testCases := []struct {
		args  []string
		level slog.Level
	}{
		{args: nil, level: slog.LevelWarn},
		{args: []string{"-v"}, level: slog.LevelInfo},
		{args: []string{"-v", "-v"}, level: slog.LevelDebug},
		{args: []string{"-vv"}, level: slog.LevelDebug},
		{args: []string{"--debug", "-v"}, level: slog.LevelDebug},
	}
	for _, tc := range testCases {
		p, _, stderr, g, got := program(t)
		args := append(append([]string{"--config", "/x.yaml", "--log-json"}, tc.args...), "deploy", "n")
		if code := p.Run(t.Context(), args); code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, stderr)
		}
		if g.Level != tc.level || g.Config != "/x.yaml" || !g.LogJSON || !slices.Equal(*got, []string{"n"}) {
			t.Errorf("%q: globals %+v, args %q", args, *g, *got)
		}
	}
}

func TestUsage(t *testing.T) {
	if Usage(nil, "x") != nil {
		t.Error("Usage(nil) is not nil")
	}
	err := Usage(Usage(errors.New("e"), "a"), "b")
	var ue *UsageError
	if !errors.As(err, &ue) || ue.Err.Error() != "e" || !slices.Equal(ue.Hints, []string{"a", "b"}) {
		t.Errorf("Usage(Usage(e, a), b) = %#v", err)
	}
}

func TestVersion(t *testing.T) {
	if v := Version("1.2.3"); v != "1.2.3" {
		t.Errorf("linked: %q", v)
	}
	testCases := []struct {
		bi   debug.BuildInfo
		want string
	}{
		{bi: debug.BuildInfo{Main: debug.Module{Version: "v0.4.0"}}, want: "v0.4.0"},
		{bi: debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, want: "dev"},
		{bi: debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}}, want: "dev-0123456789ab-dirty"},
		{bi: debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}}}, want: "dev-abc"},
		// go build (Go 1.24 and later) in a git checkout: the module version
		// is a pseudo-version naming the commit, "+dirty" when modified.
		{bi: debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261203074510-ab7c839519f2+dirty"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "ab7c839519f2aaaaaaaaaaaaaaaaaaaaaaaaaaaa"}, {Key: "vcs.modified", Value: "true"}}}, want: "v0.0.0-20261203074510-ab7c839519f2+dirty"},
	}
	for _, tc := range testCases {
		if got := versionOf(&tc.bi); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.bi, got, tc.want)
		}
	}
}
