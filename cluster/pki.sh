# shellcheck shell=bash
# The cluster's certificates and kubeconfigs, as kubeadm lays them out for one control-plane node: a cluster CA
# that signs every serving and client certificate, a front-proxy CA for the aggregation layer (metrics APIs), and
# the service-account signing key. Sourced by up.sh; writes $PKI and $KUBE_STATE/*.kubeconfig.

# _key FILE: a P-256 private key.
_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null || die "openssl genpkey $1 failed"; }

# _ca NAME CN: a self-signed CA, valid ten years (the cluster lives for one check run).
_ca() {
  _key "$PKI/$1.key"
  openssl req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days 3650 -out "$PKI/$1.crt" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null \
    || die "openssl could not make the CA $1"
}

# _cert NAME CA SUBJECT USAGE [SAN]: a certificate signed by CA; USAGE is serverAuth, clientAuth or both.
_cert() {
  local name=$1 ca=$2 subj=$3 usage=$4 san=${5:-}
  _key "$PKI/$name.key"
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null || die "openssl req $name failed"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [ -n "$san" ] && echo "subjectAltName=$san"
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial -days 365 \
    -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null || die "openssl could not sign $name"
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

# _kubeconfig NAME CERT: $KUBE_STATE/NAME.kubeconfig, authenticating with the client certificate CERT.
_kubeconfig() {
  local f="$KUBE_STATE/$1.kubeconfig" k
  k=$(kube_bin kubectl)
  rm -f "$f"
  "$k" --kubeconfig "$f" config set-cluster sre-mini --server="$APISERVER" --certificate-authority="$PKI/ca.crt" --embed-certs >/dev/null
  "$k" --kubeconfig "$f" config set-credentials "$1" --client-certificate="$PKI/$2.crt" --client-key="$PKI/$2.key" --embed-certs >/dev/null
  "$k" --kubeconfig "$f" config set-context sre-mini --cluster=sre-mini --user="$1" >/dev/null
  "$k" --kubeconfig "$f" config use-context sre-mini >/dev/null
  chmod 0600 "$f"
}

make_pki() {
  mkdir -p "$PKI"
  chmod 0700 "$PKI"
  _ca ca sre-mini-kube-ca
  _ca front-proxy-ca sre-mini-kube-front-proxy-ca
  _cert apiserver ca /CN=kube-apiserver serverAuth \
    "IP:$NODE_IP,IP:$APISERVER_SERVICE_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  # The API server's client certificate towards kubelets (logs, exec, port-forward) and aggregated APIs.
  _cert apiserver-kubelet-client ca "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  _cert front-proxy-client front-proxy-ca /CN=front-proxy-client clientAuth
  _cert kubelet ca "/CN=$NODE_NAME" serverAuth "IP:$NODE_IP,DNS:$NODE_NAME"
  _cert kubelet-client ca "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
  _cert admin ca "/O=system:masters/CN=kubernetes-admin" clientAuth
  _cert controller-manager ca /CN=system:kube-controller-manager clientAuth
  _cert scheduler ca /CN=system:kube-scheduler clientAuth
  _cert kube-proxy ca /CN=system:kube-proxy clientAuth
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null || die "openssl could not make sa.key"
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null || die "openssl could not derive sa.pub"
  _kubeconfig admin admin
  _kubeconfig controller-manager controller-manager
  _kubeconfig scheduler scheduler
  _kubeconfig kubelet kubelet-client
  _kubeconfig kube-proxy kube-proxy
}
