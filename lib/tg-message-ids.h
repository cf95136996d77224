/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * MESSAGE_IDs of journal events an operator searches for:
 *   journalctl MESSAGE_ID=<id>
 * Each has an entry in conf/tollgate.catalog (installed to
 * /usr/lib/systemd/catalog/); tests check both lists match.
 * Made with `journalctl --new-id128`; never reuse or change one.
 */

/* Shared by every daemon */
#define TG_MID_CONFIG_REJECTED "30db2047a352408ca3e5067fea27bf9d"
#define TG_MID_CONFIG_RELOADED "99791f40ab2d45cb8423131152c963cb"
#define TG_MID_STORAGE_RECOVERED "bb1b83d6cdee4bdfa66667be78083d79"
#define TG_MID_STORAGE_FAILED "c590131b643646ca9f603892b6e10c2b"

/* classifier */
#define TG_MID_FRAME_REJECTED "2f6eb89d71a74423ae933f6dc28536ab"
#define TG_MID_UPLINK_OFFLINE "8dff6a72d6514589a09b37d13716bc7b"
#define TG_MID_UPLINK_ONLINE "267faa85af1648889c58852f5a72cf29"
#define TG_MID_BATCH_REJECTED "b805634a41de4a2eaf4d79dcabb3a57c"
#define TG_MID_OUTBOX_EVICTED "7c3fef343d974782a4baa84f89e12b59"
#define TG_MID_BACKLOG_EVICTED "530ae36cbf9b4808ac6701e1715a49a6"
#define TG_MID_OVERLOADED "ea43949f4b3f40abb9c9d18c0cd0506b"
#define TG_MID_DOWNLINK_RECEIVED "9e0bccb697b3436ea346af48eda57353"
#define TG_MID_DOWNLINK_REJECTED "dbfc049e10d74ed3abedbc0f655225ba"

/* key-sync */
#define TG_MID_KEY_CONNECTED "c6f79ba52ce84cd78cdba2cfc2554ae9"
#define TG_MID_KEY_LEFT "fdaa0acf2457490290362879f07a03d0"
#define TG_MID_KEY_REFUSED "fe62712fde5a46f1aa2dbdc813eb2599"
#define TG_MID_KEY_ITEM_RECEIVED "2b9f5df806f84e5d9f6988c4bb346a50"
#define TG_MID_KEY_SYNC_FINISHED "f14ddc7c1d2042058ff22be25ac93028"
