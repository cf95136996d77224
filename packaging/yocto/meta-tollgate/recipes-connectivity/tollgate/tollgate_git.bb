# SPDX-License-Identifier: MIT
SUMMARY = "Tollgate: gateway daemons of a connected car"
DESCRIPTION = "C daemons for a connected car's Linux gateway that talk over \
D-Bus, run under systemd, log to journald and keep their state in SQLite. \
The classifier splits vehicle telemetry: real-time data goes to the cloud at \
once over cellular, everything else waits in a durable outbox; key-sync hands \
that outbox to the paired car key over mutual TLS and takes from it what the \
cloud sent the car; power-wake follows the ignition on CAN, keeps the gateway \
powered while programs hold power, powers it down when the car is off and \
wakes it at scheduled times."
SECTION = "net"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://LICENSE;md5=381e6e2dd0caa8601c7bdc354137ec50"

# The branch is mandatory since 5.2. destsuffix=${BP} lets S keep its default
# on both supported releases: ${WORKDIR}/${BP} on Scarthgap,
# ${UNPACKDIR}/${BP} on Wrynose, where "S = ${WORKDIR}/git" is an error
# (migration notes 5.3, "S = ${WORKDIR}/something no longer supported").
# Replace the placeholder host with the project's Git server.
SRC_URI = "git://git.tollgate.example/tollgate/tollgate.git;protocol=https;branch=main;destsuffix=${BP}"
# Bump to the release commit. It must contain the top-level LICENSE file and
# every unit named in SYSTEMD_SERVICE (BitBake stops with "Didn't find service
# unit" otherwise): commit the code, then bump SRCREV in a commit of its own.
# check-recipe warns while SRCREV lags behind the tree (--release: error).
SRCREV = "7756e9bf36b1c21a913a4fd6cf24b697a1960da3"
# "+git": BitBake appends the SRCREV to the package version (Nanbield and later).
PV = "0.1.0+git"

inherit meson pkgconfig systemd useradd features_check

# systemd: sd-bus, sd-event, sd-journal, Type=notify units; nothing works
# without it. tollgate: the distro feature that turns on the wolfSSL options
# the daemons need (../wolfssl/wolfssl_tollgate.inc); without it BitBake
# skips this recipe and says why, rather than building against a wolfSSL
# that lacks them.
REQUIRED_DISTRO_FEATURES = "systemd tollgate"

# One recipe per pkg-config name in meson.build (libsystemd and systemd.pc both
# come from systemd; json-c is tollgate-key-relay's); packaging/yocto/check-recipe
# keeps this list in step with the meson dependency() calls.
DEPENDS = "systemd sqlite3 curl wolfssl zlib libdeflate json-c"

PACKAGECONFIG ??= "socketcan"
PACKAGECONFIG[socketcan] = "-Dsocketcan=enabled,-Dsocketcan=disabled,libsocketcan"

# -Dtests=false: the tests need a host D-Bus and the sandbox, not a target.
# -Dwerror=false: the project's CI builds with -Werror; an image build with
#   other flags (_FORTIFY_SOURCE, --as-needed) or another compiler release
#   must not fail on a new warning.
# -Dsystemdsystemunitdir: explicit rather than read from the target's
#   systemd.pc. The sysusers.d, tmpfiles.d and catalog directories still come
#   from systemd.pc; OE's pkg-config does not prefix the sysroot to variables,
#   so they are /usr/lib/... (check-recipe builds the same way to verify).
EXTRA_OEMESON += " \
    -Dtests=false \
    -Dfuzzing=false \
    -Dwerror=false \
    -Dsystemdsystemunitdir=${systemd_system_unitdir} \
"

# Before ${PN}, so that they take their files first (PACKAGE_BEFORE_PN).
# With OE-Core's default debian class, lib${PN}-producer is renamed after
# its soname to libtollgate-producer0.
PACKAGE_BEFORE_PN = "lib${PN}-producer ${PN}-simulators ${PN}-key-relay"

SUMMARY:lib${PN}-producer = "Hand telemetry to the Tollgate classifier (shared library)"
FILES:lib${PN}-producer = "${libdir}/libtollgate-producer${SOLIBS}"

SUMMARY:${PN}-simulators = "Tollgate simulators (TSP, cloud, telemetry, CAN bus, vehicle, ECUs) and test PKI, for test benches"
FILES:${PN}-simulators = " \
    ${bindir}/tollgate-tsp-sim \
    ${bindir}/tollgate-cloud-sim \
    ${bindir}/tollgate-telemetry-gen \
    ${bindir}/tollgate-pki \
    ${bindir}/tollgate-canhub \
    ${bindir}/tollgate-vehicle-sim \
    ${bindir}/tollgate-ecu-sim \
    ${datadir}/tollgate/ecu-sim-vehicle.conf \
"
# tollgate-pki is a bash script around the openssl command, which OE-Core
# ships in openssl-bin (the openssl package has only its configuration).
RDEPENDS:${PN}-simulators += "bash openssl-bin"

# The program on the car key (or a phone or PC playing the key), not on the
# gateway: its own package, as in packaging/debian.
SUMMARY:${PN}-key-relay = "Tollgate car key relay: carries data between the car and the cloud"
FILES:${PN}-key-relay = "${bindir}/tollgate-key-relay"

# The -dev package (header, .so link, tollgate-producer.pc) is for the
# producer library, not for the daemons.
DEV_PKG_DEPENDENCY = "lib${PN}-producer (= ${EXTENDPKGV})"

# ${PN}: the daemons, tollgatectl, tollgate-uds and their system integration, listed one
# by one instead of the default FILES:${PN} (${bindir}/*, ${sysconfdir}, ...):
# a program or file that a later change installs without deciding its
# package fails the build (QA installed-vs-shipped) instead of landing here.
# Man pages and /usr/share/doc/tollgate go to ${PN}-doc (default FILES); the
# systemd class adds the units of SYSTEMD_SERVICE itself, the pattern below
# takes them too.
FILES:${PN} = " \
    ${libexecdir}/tollgate/tollgate-classifier \
    ${libexecdir}/tollgate/tollgate-key-sync \
    ${libexecdir}/tollgate/tollgate-power-wake \
    ${bindir}/tollgatectl \
    ${bindir}/tollgate-uds \
    ${sysconfdir}/tollgate/classifier.conf \
    ${sysconfdir}/tollgate/key-sync.conf \
    ${sysconfdir}/tollgate/power-wake.conf \
    ${systemd_system_unitdir}/tollgate-* \
    ${nonarch_libdir}/sysusers.d/tollgate.conf \
    ${nonarch_libdir}/tmpfiles.d/tollgate.conf \
    ${nonarch_libdir}/systemd/catalog/tollgate.catalog \
    ${datadir}/dbus-1/system.d/org.tollgate.*.conf \
    ${datadir}/dbus-1/system-services/org.tollgate.*.service \
    ${datadir}/dbus-1/interfaces/org.tollgate.*.xml \
    ${datadir}/polkit-1/rules.d/50-tollgate-power-wake.rules \
"
CONFFILES:${PN} = " \
    ${sysconfdir}/tollgate/classifier.conf \
    ${sysconfdir}/tollgate/key-sync.conf \
    ${sysconfdir}/tollgate/power-wake.conf \
"

# The daemons start at boot. The classifier's socket is listed too: the
# class enables it (sockets.target), so producers can connect before the
# classifier runs. key-sync and power-wake are also D-Bus activatable
# (SystemdService= in org.tollgate.KeySync1.service, org.tollgate.Power1.service).
SYSTEMD_PACKAGES = "${PN}"
SYSTEMD_SERVICE:${PN} = " \
    tollgate-classifier.service \
    tollgate-classifier.socket \
    tollgate-key-sync.service \
    tollgate-power-wake.service \
"
SYSTEMD_AUTO_ENABLE = "enable"

# The same account as units/tollgate.sysusers, created when the image is
# built; systemd-sysusers then finds it and leaves it alone, and OE's rootfs
# check (systemd_sysusers_check) warns if home or shell disagree. The home is
# the StateDirectory, which tmpfiles.d and systemd create: --no-create-home.
# The daemons run as tollgate (User=, Group=, SocketUser=, SocketGroup=).
USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system tollgate"
USERADD_PARAM:${PN} = "--system --gid tollgate --home-dir ${localstatedir}/lib/tollgate \
                       --no-create-home --shell /sbin/nologin tollgate"

# The daemons own a name on the system bus and are D-Bus activatable.
# power-wake's PowerDownAction=poweroff asks logind, which asks polkit
# (50-tollgate-power-wake.rules); gateways that cut power through their
# power-management ECU (PowerDownAction=exec) need neither: not an RDEPENDS.
RDEPENDS:${PN} += "dbus"
