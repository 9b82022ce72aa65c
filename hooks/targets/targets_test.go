// Package targets_test runs the example exec targets of hooks/targets
// through certpush's exec-target push: the cloud ones against recording
// stand-ins for their CLIs, haproxy-runtime against a real HAProxy.
package targets_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/inventory"
	"github.com/certpush/certpush/internal/push"
	"github.com/certpush/certpush/internal/testlb"
	"github.com/certpush/certpush/internal/verify"
)

func TestMain(m *testing.M) {
	switch name := filepath.Base(os.Args[0]); name {
	case "aws", "aliyun":
		os.Exit(fakeCLI(name, os.Args[1:]))
	}
	os.Exit(m.Run())
}

var hooks = []string{"haproxy-runtime", "aws-elb-cloudfront", "alibaba-slb"}

func require(t *testing.T, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not installed (scripts/deps.sh): %v", b, err)
			}
			t.Skipf("%s not installed (scripts/deps.sh): %v", b, err)
		}
	}
}

func TestShellcheck(t *testing.T) {
	require(t, "shellcheck")
	out, err := exec.Command("shellcheck", hooks...).CombinedOutput()
	if err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
	for _, h := range hooks[1:] {
		data, _ := os.ReadFile(h)
		if !strings.Contains(string(data), "THIS IS AN EXAMPLE. It has NOT been run against the real") {
			t.Errorf("%s: header does not say it is an example not run against the real service", h)
		}
	}
}

// cert is one issued certificate: its bundle and its PEM.
type cert struct {
	b   *bundle.Bundle
	pem string
	der []byte
}

var ca *devca.CA

func issue(t *testing.T) cert {
	t.Helper()
	if ca == nil {
		var err error
		if ca, err = devca.New("targets-test"); err != nil {
			t.Fatal(err)
		}
	}
	is, err := ca.Issue(devca.Leaf{Domains: []string{"example.com", "*.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	mat, err := bundle.ParseMaterial(is.Cert, is.Chain, is.Key)
	if err != nil {
		t.Fatal(err)
	}
	m := bundle.NewManifest("example.com", mat, "import", time.Now())
	dir := filepath.Join(t.TempDir(), m.ID)
	if err := bundle.Write(dir, mat, m); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return cert{b: b, pem: string(mat.CertPEM), der: mat.Leaf.Raw}
}

// run pushes c's bundle to the exec targets, one after the other, and
// returns target -> result (and error text).
func run(t *testing.T, c cert, targets map[string][]string, order ...string) (map[string]string, map[string]string) {
	t.Helper()
	p, err := push.New(c.b, push.Options{ExecOnly: true, Parallel: 1, Timeout: 30 * time.Second, SNI: "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	var hosts []inventory.Host
	for _, name := range order {
		hosts = append(hosts, inventory.Host{Name: name, Type: inventory.TypeExec, Exec: targets[name]})
	}
	results, errs := map[string]string{}, map[string]string{}
	for _, r := range p.Run(context.Background(), hosts) {
		results[r.Host], errs[r.Host] = r.Result, r.ErrorText
	}
	return results, errs
}

// fakeCloud makes the stand-ins' PATH directory and state.
func fakeCloud(t *testing.T, state cloud) string {
	t.Helper()
	require(t, "jq", "openssl")
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	for _, n := range []string{"aws", "aliyun"} {
		if err := os.Symlink(self, filepath.Join(bin, n)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	t.Setenv("FAKECLOUD_DIR", dir)
	saveState(t, dir, state)
	return dir
}

func saveState(t *testing.T, dir string, c cloud) {
	t.Helper()
	data, _ := json.Marshal(c)
	if err := os.WriteFile(filepath.Join(dir, "state.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func loadState(t *testing.T, dir string) cloud {
	t.Helper()
	var c cloud
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err == nil {
		err = json.Unmarshal(data, &c)
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Temporary paths differ from run to run: the bundle's directory and the
// hook's own work directory.
var (
	bundleDir = regexp.MustCompile(`(/[^/ "]+)*/certpush-exec-[0-9]+/`)
	workDir   = regexp.MustCompile(`file://[^ "]*/(config\.json)`)
)

// calls returns the recorded calls (one line each, the argv joined by
// spaces, temporary paths replaced by $DIR and $WORK) and clears them.
func calls(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "calls"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var argv []string
		if err := json.Unmarshal(sc.Bytes(), &argv); err != nil {
			t.Fatal(err)
		}
		l := strings.Join(argv, " ")
		l = bundleDir.ReplaceAllString(l, "$$DIR/")
		l = workDir.ReplaceAllString(l, "file://$$WORK/$1")
		out = append(out, l)
	}
	return out
}

func wantCalls(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: calls\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestAWSTarget(t *testing.T) {
	old, cur := issue(t), issue(t)
	const (
		listener = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/irc/50dc6c495c0c9188/f2f7dc8efc522ab2"
		oldARN   = "arn:aws:acm:eu-west-1:123456789012:certificate/old"
	)
	viewer := func(id string) map[string]any {
		return map[string]any{"Comment": "cdn", "ViewerCertificate": map[string]any{"IAMCertificateId": id, "SSLSupportMethod": "sni-only", "MinimumProtocolVersion": "TLSv1.2_2021", "CertificateSource": "iam"}}
	}
	dir := fakeCloud(t, cloud{
		Listeners:     map[string]string{listener: oldARN},
		ACM:           map[string]string{oldARN: old.pem},
		IAM:           map[string]iamCert{"old-cdn": {ID: "ASCAOLD", Path: "/cloudfront/", Body: old.pem}},
		Distributions: map[string]distribution{"E2QWRUHEXAMPLE": {ETag: "E1", Config: viewer("ASCAOLD")}, "E1U5RQF7EXAMPLE": {ETag: "E2", Config: viewer("ASCAOLD")}},
	})
	hook, _ := filepath.Abs("aws-elb-cloudfront")
	targets := map[string][]string{
		"irc-elb": {hook, "--region", "eu-west-1", "--listener", listener},
		"cdn":     {hook, "--distribution", "E2QWRUHEXAMPLE", "--distribution", "E1U5RQF7EXAMPLE"},
	}
	results, errs := run(t, cur, targets, "irc-elb", "cdn")
	if results["irc-elb"] != push.Installed || results["cdn"] != push.Installed {
		t.Fatalf("results %v, errors %v", results, errs)
	}
	elb := "aws --region eu-west-1 --output json "
	g := "aws --output json "
	name := "certpush-example.com-" + cur.b.Manifest.ID
	elbCurrent := func(arn string) []string {
		return []string{elb + "elbv2 describe-listeners --listener-arns " + listener, elb + "acm get-certificate --certificate-arn " + arn}
	}
	cdnCurrent := func(iamName string) []string {
		var out []string
		for _, d := range []string{"E2QWRUHEXAMPLE", "E1U5RQF7EXAMPLE"} {
			out = append(out, g+"cloudfront get-distribution-config --id "+d, g+"iam list-server-certificates --path-prefix /cloudfront/", g+"iam get-server-certificate --server-certificate-name "+iamName)
		}
		return out
	}
	newARN := "arn:aws:acm:eu-west-1:123456789012:certificate/0001"
	want := append(elbCurrent(oldARN),
		elb+"acm import-certificate --certificate fileb://$DIR/cert.pem --certificate-chain fileb://$DIR/chain.pem --private-key fileb://$DIR/privkey.pem",
		elb+"elbv2 modify-listener --listener-arn "+listener+" --certificates CertificateArn="+newARN)
	want = append(want, elbCurrent(newARN)...)
	want = append(want, cdnCurrent("old-cdn")...)
	want = append(want,
		g+"iam get-server-certificate --server-certificate-name "+name,
		g+"iam upload-server-certificate --server-certificate-name "+name+" --path /cloudfront/certpush/ --certificate-body file://$DIR/cert.pem --certificate-chain file://$DIR/chain.pem --private-key file://$DIR/privkey.pem",
		g+"cloudfront get-distribution-config --id E2QWRUHEXAMPLE",
		g+"cloudfront update-distribution --id E2QWRUHEXAMPLE --if-match E1 --distribution-config file://$WORK/config.json",
		g+"cloudfront get-distribution-config --id E1U5RQF7EXAMPLE",
		g+"cloudfront update-distribution --id E1U5RQF7EXAMPLE --if-match E2 --distribution-config file://$WORK/config.json",
		g+"cloudfront get-distribution-config --id E2QWRUHEXAMPLE",
		g+"cloudfront get-distribution-config --id E1U5RQF7EXAMPLE")
	want = append(want, cdnCurrent(name)...)
	got := calls(t, dir)
	wantCalls(t, "first push", got, want)
	for _, c := range got {
		if strings.Contains(c, "PRIVATE KEY") {
			t.Errorf("a key on the aws command line: %.80s", c)
		}
	}
	st := loadState(t, dir)
	if st.ACM[st.Listeners[listener]] != cur.pem {
		t.Errorf("listener does not use the new certificate")
	}
	for id, d := range st.Distributions {
		vc := d.Config["ViewerCertificate"].(map[string]any)
		if vc["IAMCertificateId"] != st.IAM[name].ID || vc["SSLSupportMethod"] != "sni-only" || d.Config["Comment"] != "cdn" {
			t.Errorf("distribution %s: %v", id, d.Config)
		}
	}
	if st.IAM[name].Path != "/cloudfront/certpush/" {
		t.Errorf("IAM path %q", st.IAM[name].Path)
	}

	// Everything serves the bundle: current only, nothing switched.
	results, errs = run(t, cur, targets, "irc-elb", "cdn")
	if results["irc-elb"] != push.Unchanged || results["cdn"] != push.Unchanged {
		t.Fatalf("second push: %v %v", results, errs)
	}
	wantCalls(t, "matching fingerprint", calls(t, dir), append(elbCurrent(newARN), cdnCurrent(name)...))

	// One distribution left behind (a run cut short): current reports
	// none, deploy reuses the IAM upload and switches both.
	st = loadState(t, dir)
	d := st.Distributions["E1U5RQF7EXAMPLE"]
	d.Config = viewer("ASCAOLD")
	st.Distributions["E1U5RQF7EXAMPLE"] = d
	saveState(t, dir, st)
	results, errs = run(t, cur, targets, "cdn")
	if results["cdn"] != push.Installed {
		t.Fatalf("push after a partial run: %v %v", results, errs)
	}
	for _, c := range calls(t, dir) {
		if strings.Contains(c, "upload-server-certificate") {
			t.Errorf("uploaded again: %s", c)
		}
	}
}

func TestAlibabaSLBTarget(t *testing.T) {
	old, cur := issue(t), issue(t)
	dir := fakeCloud(t, cloud{
		SLBListeners: map[string]string{"lb-bp1o94dp5i6earr9g6d1l:443": "old-id", "lb-bp1o94dp5i6earr9g6d1l:8443": "old-id"},
		SLBCerts:     map[string]slbCert{"old-id": {Name: "manual", Fingerprint: slbFingerprint(old.der)}},
	})
	hook, _ := filepath.Abs("alibaba-slb")
	targets := map[string][]string{"slb": {hook, "--region", "cn-hangzhou", "--listener", "lb-bp1o94dp5i6earr9g6d1l:443", "--listener", "lb-bp1o94dp5i6earr9g6d1l:8443"}}
	results, errs := run(t, cur, targets, "slb")
	if results["slb"] != push.Installed {
		t.Fatalf("results %v %v", results, errs)
	}
	a := "aliyun slb "
	r := " --RegionId cn-hangzhou"
	current := func(id string) []string {
		return []string{
			a + "DescribeLoadBalancerHTTPSListenerAttribute --LoadBalancerId lb-bp1o94dp5i6earr9g6d1l --ListenerPort 443" + r,
			a + "DescribeServerCertificates --ServerCertificateId " + id + r,
			a + "DescribeLoadBalancerHTTPSListenerAttribute --LoadBalancerId lb-bp1o94dp5i6earr9g6d1l --ListenerPort 8443" + r,
			a + "DescribeServerCertificates --ServerCertificateId " + id + r,
		}
	}
	got := calls(t, dir)
	newID := "1231579085529123_0001"
	fullchain, _ := cur.b.ReadFile(bundle.FullchainFile)
	key, _ := cur.b.ReadFile(bundle.KeyFile)
	want := append(current("old-id"),
		a+"DescribeServerCertificates"+r,
		a+"UploadServerCertificate --ServerCertificateName certpush-example.com-"+cur.b.Manifest.ID+" --ServerCertificate "+strings.TrimRight(string(fullchain), "\n")+" --PrivateKey "+strings.TrimRight(string(key), "\n")+r,
		a+"SetLoadBalancerHTTPSListenerAttribute --LoadBalancerId lb-bp1o94dp5i6earr9g6d1l --ListenerPort 443 --ServerCertificateId "+newID+r,
		a+"SetLoadBalancerHTTPSListenerAttribute --LoadBalancerId lb-bp1o94dp5i6earr9g6d1l --ListenerPort 8443 --ServerCertificateId "+newID+r)
	want = append(want, current(newID)...)
	wantCalls(t, "first push", got, want)

	results, _ = run(t, cur, targets, "slb")
	if results["slb"] != push.Unchanged {
		t.Fatalf("second push: %v", results)
	}
	wantCalls(t, "matching fingerprint", calls(t, dir), current(newID))
}

// haproxy-runtime against a real HAProxy: deployed when HAProxy serves
// another certificate, unchanged (no deploy) when it serves the bundle's.
func TestHAProxyRuntimeTarget(t *testing.T) {
	require(t, "socat")
	testlb.Require(t)
	old, cur := issue(t), issue(t)
	oldKey, _ := old.b.ReadFile(bundle.KeyFile)
	oldChain, _ := old.b.ReadFile(bundle.FullchainFile)
	hp := testlb.Start(t, append(oldChain, oldKey...))

	hook, _ := filepath.Abs("haproxy-runtime")
	log := filepath.Join(t.TempDir(), "verbs")
	wrapper := filepath.Join(t.TempDir(), "recording-haproxy-runtime")
	script := "#!/bin/sh\necho \"$3\" >> " + log + "\nexec " + hook + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	verbs := func() string {
		data, _ := os.ReadFile(log)
		os.Remove(log)
		return strings.Join(strings.Fields(string(data)), ",")
	}
	targets := map[string][]string{"lb": {wrapper, hp.Socket, hp.Crt}}
	pid := hp.Pid()

	results, errs := run(t, cur, targets, "lb")
	if results["lb"] != push.Installed {
		t.Fatalf("push: %v %v\n%s", results, errs, hp.Log)
	}
	if got := verbs(); got != "current,deploy,current" {
		t.Errorf("verbs %s, want current,deploy,current", got)
	}
	s, err := verify.Probe(context.Background(), hp.Addr(), "example.com", 3*time.Second)
	if err != nil || s.Fingerprint != cur.b.Manifest.Fingerprint {
		t.Errorf("haproxy serves %v (%v), want %.16s", s, err, cur.b.Manifest.Fingerprint)
	}
	if hp.Pid() != pid || hp.Exited() {
		t.Errorf("haproxy restarted")
	}

	results, _ = run(t, cur, targets, "lb")
	if results["lb"] != push.Unchanged {
		t.Errorf("second push: %v", results)
	}
	if got := verbs(); got != "current" {
		t.Errorf("verbs %s on a matching fingerprint, want current only", got)
	}
}
