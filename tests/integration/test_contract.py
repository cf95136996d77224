#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The contract files agree with the code: every MESSAGE_ID has a catalog
entry (and no entry is orphaned), every D-Bus member of the shipped XML is
documented, every member a privileged caller needs is in the policy. No
daemon runs here (ContractTest compares the XML with the live daemon)."""

import os
import re
import subprocess
import tempfile
import unittest
import xml.etree.ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read(*parts):
    with open(os.path.join(REPO, *parts)) as f:
        return f.read()


class ContractFilesTest(unittest.TestCase):
    def test_every_message_id_has_a_catalog_entry(self):
        ids = dict((v, k) for k, v in re.findall(r'#define (TG_MID_\w+) "([0-9a-f]{32})"', read("lib", "tg-message-ids.h")))
        catalog = read("conf", "tollgate.catalog")
        entries = re.split(r"^-- ([0-9a-f]{32})\n", catalog, flags=re.M)[1:]
        entries = dict(zip(entries[0::2], entries[1::2]))
        self.assertEqual(sorted(ids), sorted(entries), "MESSAGE_IDs and catalog entries differ")
        self.assertEqual(len(set(ids)), len(ids))
        for mid, text in entries.items():
            for field in ("Subject:", "Defined-By: tollgate", "Support:"):
                self.assertIn(field, text, "%s (%s) lacks %s" % (mid, ids[mid], field))
            body = text.split("\n\n", 1)
            self.assertTrue(len(body) == 2 and len(body[1].strip()) > 40, "%s has no explanation" % ids[mid])

    def test_catalog_is_accepted_by_journalctl(self):
        with tempfile.TemporaryDirectory() as root:
            d = os.path.join(root, "usr", "lib", "systemd", "catalog")
            os.makedirs(d)
            with open(os.path.join(d, "tollgate.catalog"), "w") as f:
                f.write(read("conf", "tollgate.catalog"))
            p = subprocess.run(["journalctl", "--root=" + root, "--update-catalog"], capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertNotIn("Failed", p.stderr)
            p = subprocess.run(["journalctl", "--root=" + root, "--list-catalog"], capture_output=True, text=True)
            n = len(re.findall(r"^[0-9a-f]{32} ", p.stdout, flags=re.M))
            self.assertEqual(n, read("lib", "tg-message-ids.h").count("#define TG_MID_"))

    DAEMONS = [("Classifier1", "classifier.md"), ("KeySync1", "key-sync.md"), ("Power1", "power-wake.md")]

    def test_every_dbus_member_is_documented_and_in_the_policy(self):
        for iface_name, docfile in self.DAEMONS:
            root = ET.fromstring(read("conf", "dbus", "org.tollgate.%s.xml" % iface_name))
            doc = read("docs", docfile)
            policy = read("conf", "dbus", "org.tollgate.%s.conf" % iface_name)
            members = 0
            for iface in root.iter("interface"):
                for el in iface:
                    name = el.get("name")
                    members += 1
                    self.assertIn("`%s" % name, doc, "%s %s is not in docs/%s" % (el.tag, name, docfile))
                    if el.tag == "method":
                        self.assertIn('send_member="%s"' % name, policy,
                                      "method %s.%s is not in the D-Bus policy" % (iface_name, name))
            self.assertGreater(members, 3, iface_name)

    def test_every_config_key_is_in_the_shipped_file(self):
        keys = re.findall(r'C\("(\w+)", "(\w+)"', read("daemons", "classifier", "classifier-conf.c"))
        conf = read("conf", "classifier.conf")
        self.assertGreater(len(keys), 10)
        for section, key in keys:
            self.assertRegex(conf, r"(?m)^#%s=" % key, "[%s] %s= is not documented in conf/classifier.conf" % (section, key))
        keys = re.findall(r'\b[SK]\("(\w+)", ', read("daemons", "key-sync", "keysync-conf.c"))
        conf = read("conf", "key-sync.conf")
        man = read("docs", "man", "tollgate-key-sync.conf.5")
        self.assertGreater(len(keys), 10)
        for key in keys:
            self.assertRegex(conf, r"(?m)^#%s=" % key, "%s= is not documented in conf/key-sync.conf" % key)
            self.assertIn(key, man, "%s= is not in tollgate-key-sync.conf(5)" % key)

    def test_every_power_wake_key_is_documented(self):
        # The table's macros: P(…) [PowerWake], SRC(…) [Source], SIG(…) [Signal],
        # CMD(…) [Command]; the _AT variants remember where a key was set.
        items = re.findall(r'\b(P|SRC|SIG|CMD)(?:_AT)?\("(\w+)", ', read("daemons", "power-wake", "powerwake-conf.c"))
        conf = read("conf", "power-wake.conf")
        man = read("docs", "man", "tollgate-power-wake.conf.5")
        doc = read("docs", "power-wake.md")
        self.assertGreater(len(items), 25)
        for macro, key in items:
            # Source= and the sources' Type=/Bus= have no default: they are set in the
            # shipped file (the reference vehicle), every other key is a commented default.
            self.assertRegex(conf, r"(?m)^#?%s=" % key, "%s= is not in conf/power-wake.conf" % key)
            self.assertRegex(man, r"(?m)^\.B[IR]? %s=" % key, "%s= is not in tollgate-power-wake.conf(5)" % key)
            self.assertIn("`%s=" % key, doc, "%s= is not in docs/power-wake.md" % key)

    def test_every_ecu_sim_key_is_documented(self):
        # The simulator's table: V(…) [Vehicle], B(…) [Bus NAME], E(…) [Ecu NAME].
        items = re.findall(r'\b([VBE])\("(\w+)", ', read("tools", "ecu-sim", "ecu-sim-conf.c"))
        man = read("docs", "man", "tollgate-ecu-sim.conf.5")
        self.assertGreater(len(items), 30)
        for macro, key in items:
            self.assertRegex(man, r"(?m)^\.B[IR]? %s=" % key, "%s= is not in tollgate-ecu-sim.conf(5)" % key)

    def test_every_unit_has_its_bus_files(self):
        for iface_name, _ in self.DAEMONS:
            service = read("conf", "dbus", "org.tollgate.%s.service" % iface_name)
            unit = re.search(r"(?m)^SystemdService=(\S+)$", service).group(1)
            text = read("units", unit + ".in")
            self.assertIn("BusName=org.tollgate.%s\n" % iface_name, text)
            self.assertIn("Type=notify", text)
            self.assertIn("WatchdogSec=", text)

if __name__ == "__main__":
    unittest.main(verbosity=2)
