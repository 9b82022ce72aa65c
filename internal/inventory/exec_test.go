package inventory

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseExecTarget(t *testing.T) {
	cfg, err := Parse("/etc/certpush/certpush.yaml", []byte(`
certs:
  example.com:
    domains: [example.com]
    hosts: [web-01, lb]
hosts:
  web-01: {address: 10.0.0.1}
  elb:
    type: exec
    exec: [targets/aws-elb-cloudfront, --listener, arn:aws:x]
    timeout: 5m
    verify: ["10.0.0.9:443"]
    groups: [lb]
  cdn: {type: exec, exec: [aliyun-slb], groups: [lb]}
`))
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := cfg.HostsFor("example.com")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, h := range hosts {
		names = append(names, h.Name)
	}
	if !reflect.DeepEqual(names, []string{"web-01", "cdn", "elb"}) {
		t.Fatalf("hosts %v", names)
	}
	elb := hosts[2]
	if !elb.IsExec() || elb.ExecTimeout != 5*time.Minute || elb.Location() != "exec:/etc/certpush/targets/aws-elb-cloudfront" {
		t.Errorf("elb = %+v", elb)
	}
	if want := []string{filepath.Clean("/etc/certpush/targets/aws-elb-cloudfront"), "--listener", "arn:aws:x"}; !reflect.DeepEqual(elb.Exec, want) {
		t.Errorf("exec = %q, want %q", elb.Exec, want)
	}
	// A bare program name is looked up in PATH, not resolved.
	if hosts[1].Exec[0] != "aliyun-slb" || hosts[0].IsExec() {
		t.Errorf("cdn exec %q, web-01 exec %v", hosts[1].Exec, hosts[0].IsExec())
	}
}

func TestParseExecTargetErrors(t *testing.T) {
	_, err := Parse("c.yaml", []byte(`
certs:
  example.com: {domains: [example.com], hosts: [a, b, c, d]}
hosts:
  a: {type: exec}
  b: {type: exec, exec: [x], address: 10.0.0.1, command: certnode}
  c: {address: 10.0.0.2, exec: [x], timeout: 1m}
  d: {type: lb, exec: []}
`))
	got := strings.Join(errorLines(t, err), "\n")
	for _, want := range []string{
		"c.yaml:5: hosts.a: exec is required for type: exec",
		"c.yaml:6: hosts.b.address: only applies to SSH hosts",
		"c.yaml:6: hosts.b.command: only applies to SSH hosts",
		"c.yaml:7: hosts.c.exec: only applies to type: exec targets",
		"c.yaml:7: hosts.c.timeout: only applies to type: exec targets",
		"c.yaml:8: hosts.d.type:",
		"c.yaml:8: hosts.d.exec: must name a command",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q:\n%s", want, got)
		}
	}
}
