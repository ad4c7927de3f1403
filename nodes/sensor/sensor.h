/* sensor.h — source nodes that read the machine a satellite runs on
 * (docs/nodes.md#sensors): `sensor.sysfs` (hwmon temperatures,
 * power_supply, /proc load and memory) and `sensor.modbus` (Modbus TCP
 * register polling, loaded on demand: nodes/sensor/modbus.c). Both emit
 * Metrics (schemas/metrics.fbs) whose keys are the readings' tags. */
#ifndef TLCM_NODES_SENSOR_H
#define TLCM_NODES_SENSOR_H

#include "engine/node.h"

extern const tlcm_node_type_t tlcm_node_sensor_sysfs;
extern const tlcm_node_type_t tlcm_node_sensor_modbus;

/* Metrics building shared by both (sysfs.c): entries collected one by
 * one, then emitted as one Metrics with source = node id. */
typedef struct tlcm_sensor_msg tlcm_sensor_msg_t;
tlcm_sensor_msg_t *tlcm_sensor_msg_new(void);
void tlcm_sensor_put(tlcm_sensor_msg_t *m, const char *key, double num);
void tlcm_sensor_put_str(tlcm_sensor_msg_t *m, const char *key,
			 const char *str);
void tlcm_sensor_msg_free(tlcm_sensor_msg_t *m);
/* Emit on port 0 with sequence number seq and free m; 0 or an error. */
int tlcm_sensor_emit(tlcm_ctx_t *ctx, tlcm_sensor_msg_t *m, uint64_t seq);
/* key with every byte outside [A-Za-z0-9_.-] replaced by '_' */
void tlcm_sensor_key(char *out, size_t len, const char *in);

#endif
