package inventory

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseHostList(t *testing.T) {
	defaults := SSH{User: "certsync", Port: 22, Incoming: "/in", Command: "certnode"}
	host := func(name, addr string, port int, user string) Host {
		return Host{Name: name, Address: addr, Port: port, User: user, Incoming: "/in", Command: "certnode"}
	}
	testCases := []struct {
		desc string
		data string
		want []Host
	}{
		{
			desc: "empty",
			data: "",
		},
		{
			desc: "comments and blank lines",
			data: "# fleet\n\n   \n\t# indented comment\n",
		},
		{
			desc: "names, users, ports",
			data: "web-01\nroot@web-02\nweb-03:2222\ndeploy@10.0.0.4:2200\n",
			want: []Host{
				host("web-01", "web-01", 22, "certsync"),
				host("web-02", "web-02", 22, "root"),
				host("web-03:2222", "web-03", 2222, "certsync"),
				host("10.0.0.4:2200", "10.0.0.4", 2200, "deploy"),
			},
		},
		{
			desc: "trailing comments, spaces and CRLF",
			data: "  web-01   # primary\r\nweb-02#no space\r\n",
			want: []Host{
				host("web-01", "web-01", 22, "certsync"),
				host("web-02", "web-02", 22, "certsync"),
			},
		},
		{
			desc: "IPv6",
			data: "[::1]:2222\n::1\nu@[2001:db8::1]\nu@2001:db8::2 # bare\nfe80::1%eth0\n[fe80::2%eth0]:22\n",
			want: []Host{
				host("[::1]:2222", "::1", 2222, "certsync"),
				host("::1", "::1", 22, "certsync"),
				host("[2001:db8::1]", "2001:db8::1", 22, "u"),
				host("2001:db8::2", "2001:db8::2", 22, "u"),
				host("fe80::1%eth0", "fe80::1%eth0", 22, "certsync"),
				host("[fe80::2%eth0]:22", "fe80::2%eth0", 22, "certsync"),
			},
		},
		{
			desc: "same host on other ports",
			data: "h.example\nh.example:2222\n",
			want: []Host{
				host("h.example", "h.example", 22, "certsync"),
				host("h.example:2222", "h.example", 2222, "certsync"),
			},
		},
		{
			desc: "no final newline",
			data: "a.example",
			want: []Host{host("a.example", "a.example", 22, "certsync")},
		},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := ParseHostList("list", []byte(tc.data), defaults)
			if err != nil {
				t.Fatalf("ParseHostList() error: %v", err)
			}
			if len(got) == 0 && len(tc.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseHostList() =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestParseHostListDefaults(t *testing.T) {
	got, err := ParseHostList("list", []byte("a.example\n"), SSH{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Host{{Name: "a.example", Address: "a.example", Port: DefaultPort, User: DefaultUser, Incoming: DefaultIncoming, Command: DefaultCommand}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseHostList() = %+v, want %+v", got, want)
	}
}

func TestParseHostListErrors(t *testing.T) {
	testCases := []struct {
		desc string
		data string
		want []string
	}{
		{desc: "bad port", data: "ok\nh.example:x\n", want: []string{`inventory/example.com:2: bad port "x"`}},
		{desc: "port out of range", data: "h.example:65536\n", want: []string{`inventory/example.com:1: port 65536 out of range 1..65535`}},
		{desc: "port zero", data: "h.example:0\n", want: []string{`inventory/example.com:1: port 0 out of range 1..65535`}},
		{desc: "signed port", data: "h.example:+22\n", want: []string{`inventory/example.com:1: bad port "+22"`}},
		{desc: "empty port", data: "h.example:\n", want: []string{`inventory/example.com:1: bad port ""`}},
		{desc: "two fields", data: "h.example 2222\n", want: []string{`inventory/example.com:1: unexpected "2222" after "h.example": write one [user@]host[:port] a line`}},
		{desc: "empty user", data: "@h.example\n", want: []string{`inventory/example.com:1: empty user`}},
		{desc: "two users", data: "a@b@h.example\n", want: []string{`inventory/example.com:1: bad entry "a@b@h.example": more than one '@'`}},
		{desc: "bad user", data: "a:b@h.example\n", want: []string{`inventory/example.com:1: bad user "a:b": holds ':'`}},
		{desc: "missing bracket", data: "[::1:22\n", want: []string{`inventory/example.com:1: bad entry "[::1:22": missing ']'`}},
		{desc: "IPv4 in brackets", data: "[10.0.0.1]:22\n", want: []string{`inventory/example.com:1: bad address "[10.0.0.1]": brackets must hold an IPv6 address`}},
		{desc: "junk after bracket", data: "[::1]22\n", want: []string{`inventory/example.com:1: bad entry "[::1]22": unexpected "22" after ']'`}},
		{desc: "bad bare IPv6", data: "::1:zz\n", want: []string{`inventory/example.com:1: bad address "::1:zz": write IPv6 as [addr]:port or a bare address without port`}},
		{desc: "bad host name", data: "bad_-.example..\n", want: []string{`inventory/example.com:1: bad address "bad_-.example..": label "bad_-" starts or ends with '-'`}},
		{desc: "empty host", data: "user@:22\n", want: []string{`inventory/example.com:1: bad address "": empty address`}},
		{desc: "bad IPv6 zone", data: "::1%]\n", want: []string{`inventory/example.com:1: bad address "::1%]": write IPv6 as [addr]:port or a bare address without port`}},
		{desc: "duplicate", data: "a\nb\nu@a\n", want: []string{`inventory/example.com:3: duplicate entry "a" (first on line 1)`}},
		{
			desc: "all problems reported",
			data: "ok\n\nh:x\n# c\nh:0\nh y\n",
			want: []string{
				`inventory/example.com:3: bad port "x"`,
				`inventory/example.com:5: port 0 out of range 1..65535`,
				`inventory/example.com:6: unexpected "y" after "h": write one [user@]host[:port] a line`,
			},
		},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			hosts, err := ParseHostList("inventory/example.com", []byte(tc.data), SSH{})
			if err == nil {
				t.Fatalf("ParseHostList() = %+v, want error", hosts)
			}
			if hosts != nil {
				t.Errorf("ParseHostList() returned hosts with an error: %+v", hosts)
			}
			got := errorLines(t, err)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
