# SPDX-License-Identifier: MIT
# Tollgate needs wolfSSL options that meta-networking's recipe does not turn
# on everywhere (TLS 1.3 PSK, CRL, the OpenSSL compatibility layer, ex_data,
# ...): see wolfssl_tollgate.inc. They apply only to builds whose
# DISTRO_FEATURES contain "tollgate", the feature tollgate_git.bb requires,
# so that adding this layer to a build changes no other recipe on its own
# (the Yocto Project Compatible check, yocto-check-layer's
# common.test_signatures, tests exactly that; meta-virtualization gates its
# appends on the "virtualization" feature the same way). wolfssl-native and
# nativesdk are unaffected: their DISTRO_FEATURES never contain it.
require ${@bb.utils.contains('DISTRO_FEATURES', 'tollgate', '${BPN}_tollgate.inc', '', d)}
