package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// pki is the certificate authority of one test cluster and the files made
// from it. Everything lives in dir and goes with the cluster.
type pki struct {
	dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey

	CAFile string
	// ServingCert/ServingKey: kube-apiserver's serving certificate
	// (apiServerNames).
	ServingCert, ServingKey string
	// AdminCert/AdminKey: a client in group system:masters, used by the
	// tests, by every control-plane component, and by kube-apiserver as
	// its client certificate towards a real node's kubelet.
	AdminCert, AdminKey string
	// SAKey/SAPub: the service account token signing key pair.
	SAKey, SAPub string
}

// newPKI makes the cluster's CA and certificates in dir; apiIPs are extra
// addresses kube-apiserver serves on.
func newPKI(dir string, apiIPs ...net.IP) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &pki{dir: dir}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "dirvol-e2e-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	if p.caCert, err = x509.ParseCertificate(der); err != nil {
		return nil, err
	}
	p.caKey = key
	p.CAFile = filepath.Join(dir, "ca.crt")
	if err := writePEM(p.CAFile, "CERTIFICATE", der); err != nil {
		return nil, err
	}
	if p.ServingCert, p.ServingKey, err = p.issue("kube-apiserver", nil, apiServerNames(apiIPs...)); err != nil {
		return nil, err
	}
	if p.AdminCert, p.AdminKey, err = p.issue("admin", []string{"system:masters"}, nil); err != nil {
		return nil, err
	}
	if err := p.serviceAccountKeys(); err != nil {
		return nil, err
	}
	return p, nil
}

// serverNames are the addresses a serving certificate is for; nil makes a
// client certificate.
type serverNames struct {
	ips []net.IP
	dns []string
}

// apiServerNames are kube-apiserver's: loopback, and the kubernetes.default
// Service's names and ClusterIP (the API server checks its own certificate
// against that IP at start; pods of a real node connect to it), plus the
// extra addresses it serves on.
func apiServerNames(extra ...net.IP) *serverNames {
	return &serverNames{
		ips: append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 0, 0, 1)}, extra...),
		dns: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
	}
}

// issue signs a certificate for name: a serving certificate for server's
// names when server is set, otherwise a client certificate in the given
// groups.
func (p *pki) issue(name string, groups []string, server *serverNames) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: groups},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server != nil {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = server.ips
		tmpl.DNSNames = server.dns
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	file := strings.ReplaceAll(name, ":", "_") // system:node:<name>
	certFile = filepath.Join(p.dir, file+".crt")
	keyFile = filepath.Join(p.dir, file+".key")
	if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
		return "", "", err
	}
	return certFile, keyFile, writePEM(keyFile, "EC PRIVATE KEY", keyDER)
}

// serviceAccountKeys makes the RSA key pair that signs service account
// tokens (the API server requires one even though no pod ever runs).
func (p *pki) serviceAccountKeys() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	p.SAKey = filepath.Join(p.dir, "sa.key")
	p.SAPub = filepath.Join(p.dir, "sa.pub")
	if err := writePEM(p.SAKey, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key)); err != nil {
		return err
	}
	return writePEM(p.SAPub, "PUBLIC KEY", pub)
}

func writePEM(path, typ string, der []byte) error {
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
