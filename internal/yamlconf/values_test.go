package yamlconf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReaders(t *testing.T) {
	testCases := []struct {
		desc string
		src  string
		fn   string
		val  string
		want []string
	}{
		{desc: "int", src: "v: 12", fn: "Int", val: "12"},
		{desc: "int hex", src: "v: 0x1f", fn: "Int", val: "31"},
		{desc: "int quoted", src: `v: "12"`, fn: "Int", want: []string{`1: k: want an integer, got "12"`}},
		{desc: "int float", src: "v: 2.5", fn: "Int", want: []string{`1: k: want an integer, got "2.5"`}},
		{desc: "port", src: "v: 443", fn: "Port", val: "443"},
		{desc: "port zero", src: "v: 0", fn: "Port", want: []string{"1: k: 0 out of range 1..65535"}},
		{desc: "bool", src: "v: true", fn: "Bool", val: "true"},
		{desc: "bool yes", src: "v: yes", fn: "Bool", want: []string{`1: k: want true or false, got "yes"`}},
		{desc: "duration", src: "v: 90s", fn: "Duration", val: "1m30s"},
		{desc: "duration zero", src: "v: 0s", fn: "Duration", want: []string{`1: k: want a positive duration such as 90s, 15m or 720h, got "0s"`}},
		{desc: "duration no unit", src: "v: 60", fn: "Duration", want: []string{`1: k: want a positive duration such as 90s, 15m or 720h, got "60"`}},
		{desc: "duration or zero", src: "v: 0", fn: "DurationOrZero", val: "0s"},
		{desc: "duration negative", src: "v: -1s", fn: "DurationOrZero", want: []string{`1: k: want 0 or a positive duration such as 90s, 15m or 720h, got "-1s"`}},
		{desc: "path relative", src: "v: b/../c", fn: "Path", val: "/etc/x/c"},
		{desc: "path absolute", src: "v: //a/./b", fn: "Path", val: "/a/b"},
		{desc: "path empty", src: `v: ""`, fn: "Path", want: []string{"1: k: must not be empty"}},
		{desc: "strings", src: "v: [a, b]", fn: "Strings", val: "a,b"},
		{desc: "strings empty item", src: `v: [a, ""]`, fn: "Strings", val: "a", want: []string{"1: k[1]: must not be empty"}},
		{desc: "endpoints", src: `v: ["h.example:443", "[::1]:53", "h:0", "h"]`, fn: "Endpoints", val: "h.example:443,[::1]:53", want: []string{
			`1: k: bad address "h:0": port 0 out of range 1..65535`,
			`1: k: bad address "h": want host:port ([::1]:443 for IPv6)`,
		}},
		{desc: "domains", src: `v: [A.example, "*.a.example", a.example, "a_b.example"]`, fn: "Domains", val: "a.example,*.a.example", want: []string{
			`1: k: duplicate domain "a.example"`,
			`1: k: bad domain "a_b.example": label "a_b" holds '_'`,
		}},
		{desc: "server name", src: "v: WWW.Example", fn: "ServerName", val: "www.example"},
		{desc: "server name empty", src: "v: ~", fn: "ServerName", val: ""},
		{desc: "server name bad", src: "v: a..b", fn: "ServerName", want: []string{`1: k: bad server name "a..b": empty label`}},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			r := &recorder{Checker{File: "/etc/x/f.yaml"}}
			n := node(t, tc.src)
			var val any
			switch tc.fn {
			case "Int":
				val, _ = r.Int(n, "k")
			case "Port":
				val, _ = r.Port(n, "k")
			case "Bool":
				val, _ = r.Bool(n, "k")
			case "Duration":
				val, _ = r.Duration(n, "k")
			case "DurationOrZero":
				val, _ = r.DurationOrZero(n, "k")
			case "Path":
				val, _ = r.Path(n, "k")
			case "Strings":
				v, _ := r.Strings(n, "k")
				val = strings.Join(v, ",")
			case "Endpoints":
				v, _ := r.Endpoints(n, "k")
				val = strings.Join(v, ",")
			case "Domains":
				v, _ := r.Domains(n, "k")
				val = strings.Join(v, ",")
			case "ServerName":
				val, _ = r.ServerName(n, "k")
			}
			if len(tc.want) > 0 && tc.val == "" {
				check(t, r.got(), tc.want)
				return
			}
			if got := fmt.Sprint(val); got != tc.val {
				t.Errorf("%s = %q, want %q", tc.fn, got, tc.val)
			}
			check(t, r.got(), tc.want)
		})
	}
}

func TestErr(t *testing.T) {
	c := &Checker{File: "main.yaml"}
	if err := c.Err(); err != nil {
		t.Fatalf("Err() = %v with no problems", err)
	}
	c.Addf("list", 2, "b")
	c.Addf("main.yaml", 0, "whole")
	c.Addf("main.yaml", 9, "late")
	c.Addf("other", 1, "c")
	c.Addf("list", 1, "a")
	c.Addf("main.yaml", 3, "early")
	err := c.Err()
	want := "main.yaml:3: early\nmain.yaml:9: late\nmain.yaml: whole\nlist:1: a\nlist:2: b\nother:1: c"
	if err == nil || err.Error() != want {
		t.Errorf("Err() =\n%v\nwant\n%s", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.File != "main.yaml" || e.Line != 3 {
		t.Errorf("errors.As: %#v", e)
	}
	var ps Problems
	ps.Addf("b", 1, "x")
	ps.Addf("a", 1, "y")
	if got := ps.Err().Error(); got != "b:1: x\na:1: y" || ps.Len() != 2 {
		t.Errorf("Problems.Err() = %q", got)
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	if data, err := ReadFile(small, 5); err != nil || string(data) != "12345" {
		t.Errorf("ReadFile(small) = %q, %v", data, err)
	}
	testCases := []struct {
		desc  string
		name  string
		limit int64
		want  string
	}{
		{desc: "over the limit", name: small, limit: 4, want: small + " is larger than the limit of 4 bytes"},
		{desc: "zero limit", name: small, limit: 0, want: small + " is larger than the limit of 0 bytes"},
		{desc: "directory", name: dir, limit: 10, want: dir + " is not a regular file"},
		{desc: "missing", name: filepath.Join(dir, "none"), limit: 10, want: "stat " + filepath.Join(dir, "none") + ": no such file or directory"},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := ReadFile(tc.name, tc.limit)
			if err == nil || err.Error() != tc.want {
				t.Errorf("ReadFile() error = %v, want %q", err, tc.want)
			}
		})
	}
	if got := tooLarge("f", 4<<20).Error(); got != "f is larger than the limit of 4 MiB" {
		t.Errorf("tooLarge = %q", got)
	}
}

func TestCheckEndpoint(t *testing.T) {
	testCases := []struct {
		desc    string
		s       string
		anyHost bool
		want    string
	}{
		{desc: "name", s: "h.example:443"},
		{desc: "loose name", s: "_srv.example.:53"},
		{desc: "IPv6", s: "[fe80::1%eth0]:22"},
		{desc: "any host", s: ":80", anyHost: true},
		{desc: "empty host", s: ":80", want: `bad address ":80": empty address`},
		{desc: "no port", s: "h", want: `bad address "h": want host:port ([::1]:443 for IPv6)`},
		{desc: "named port", s: "h:https", want: `bad address "h:https": bad port "https"`},
		{desc: "bad host", s: "a b:1", want: `bad address "a b:1": label "a b" holds ' '`},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			err := CheckEndpoint(tc.s, tc.anyHost)
			if got := fmt.Sprint(err); (tc.want == "" && err != nil) || (tc.want != "" && got != tc.want) {
				t.Errorf("CheckEndpoint(%q) = %v, want %q", tc.s, err, tc.want)
			}
		})
	}
}
