package inventory

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

const wavesConfig = `
certs:
  example.com:
    domains: [example.com]
    hosts: [elb, cdn, web, ws]
    waves: [[irc-elb], [elb-prod, cdn], beta-01, [ws-01], [rest]]
    pause: 2m
hosts:
  irc-elb: {type: exec, exec: [x], groups: [elb]}
  elb-prod: {type: exec, exec: [x], groups: [elb]}
  cdn-1: {type: exec, exec: [x], groups: [cdn]}
  cdn-2: {type: exec, exec: [x], groups: [cdn]}
  beta-01: {address: 10.0.0.10, groups: [web]}
  web-01: {address: 10.0.0.11, groups: [web]}
  web-02: {address: 10.0.0.12, groups: [web]}
  ws-01: {address: 10.0.1.21, groups: [ws]}
  ws-02: {address: 10.0.1.22, groups: [ws]}
`

func TestWaves(t *testing.T) {
	cfg, err := Parse("c.yaml", []byte(wavesConfig))
	if err != nil {
		t.Fatal(err)
	}
	waves, err := cfg.Waves("example.com")
	if err != nil {
		t.Fatal(err)
	}
	var got [][]string
	for _, w := range waves {
		got = append(got, append([]string{w.Name}, w.Names()...))
	}
	want := [][]string{{"1", "irc-elb"}, {"2", "elb-prod", "cdn-1", "cdn-2"}, {"3", "beta-01"}, {"4", "ws-01"}, {"5", "web-01", "web-02", "ws-02"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("waves %v, want %v", got, want)
	}
	if cfg.Certs["example.com"].Pause != 2*time.Minute {
		t.Errorf("pause %v", cfg.Certs["example.com"].Pause)
	}
	hosts, _ := cfg.HostsFor("example.com")
	var names []string
	for _, h := range hosts {
		names = append(names, h.Name)
	}
	if strings.Join(names, " ") != "irc-elb elb-prod cdn-1 cdn-2 beta-01 ws-01 web-01 web-02 ws-02" {
		t.Errorf("HostsFor order %v", names)
	}
}

func TestCanaryIsTwoWaves(t *testing.T) {
	cfg, err := Parse("c.yaml", []byte(`
certs:
  a: {domains: [a.com], hosts: [web], canary: [web-02]}
  b: {domains: [b.com], hosts: [web]}
hosts:
  web-01: {address: 10.0.0.11, groups: [web]}
  web-02: {address: 10.0.0.12, groups: [web]}
`))
	if err != nil {
		t.Fatal(err)
	}
	w, _ := cfg.Waves("a")
	if len(w) != 2 || w[0].Name != "canary" || !reflect.DeepEqual(w[0].Names(), []string{"web-02"}) || w[1].Name != "rest" || !reflect.DeepEqual(w[1].Names(), []string{"web-01"}) {
		t.Errorf("canary waves %+v", w)
	}
	w, _ = cfg.Waves("b")
	if len(w) != 1 || w[0].Name != "all" || len(w[0].Hosts) != 2 {
		t.Errorf("no canary: %+v", w)
	}
}

func TestWavesErrors(t *testing.T) {
	_, err := Parse("c.yaml", []byte(`
certs:
  a:
    domains: [a.com]
    hosts: [web, db-01]
    waves: [[web-01], [nosuch, web-01], [db]]
  b: {domains: [b.com], hosts: [web], canary: [web-01], waves: [[web-01], [rest]]}
hosts:
  web-01: {address: 10.0.0.11, groups: [web]}
  web-02: {address: 10.0.0.12, groups: [web]}
  db-01: {address: 10.0.0.13}
  db-02: {address: 10.0.0.14, groups: [db]}
`))
	got := strings.Join(errorLines(t, err), "\n")
	for _, want := range []string{
		`c.yaml:6: certs.a.waves: "nosuch" is not a host or group of a`,
		`c.yaml:6: certs.a.waves: "web-01" is in two waves`,
		`c.yaml:6: certs.a.waves: "db" is not a host or group of a`,
		`c.yaml:6: certs.a.waves: web-02, db-01 in no wave`,
		`c.yaml:7: certs.b.waves: waves and canary together`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q:\n%s", want, got)
		}
	}
}
