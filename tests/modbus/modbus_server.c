/* modbus_server.c — tlcm-test-modbus-server: a Modbus TCP device for
 * tests/unit/test_sensor_modbus.c, made with libmodbus itself
 * (modbus_new_tcp, modbus_mapping_new, modbus_receive/modbus_reply).
 *
 *   tlcm-test-modbus-server PORT     (0: any free port)
 *
 * Listens on 127.0.0.1:PORT, prints the port it got on stdout, then
 * answers one client at a time until killed. Its registers hold fixed
 * values the test knows (below); addresses past the maps are answered
 * with the exception "illegal data address".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <modbus/modbus.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: tlcm-test-modbus-server PORT\n");
		return 2;
	}
	modbus_t *ctx = modbus_new_tcp("127.0.0.1", atoi(argv[1]));
	modbus_mapping_t *map = modbus_mapping_new(8, 4, 16, 4);
	if (!ctx || !map) {
		fprintf(stderr, "modbus server: %s\n", modbus_strerror(errno));
		return 1;
	}
	static const uint8_t coils[8] = {1, 0, 1, 1, 0, 0, 0, 0};
	static const uint8_t discrete[4] = {0, 1, 0, 0};
	static const uint16_t holding[16] = {
		1234,           /* 0: u16 */
		0xfffe,         /* 1: i16 -2 */
		0x0001, 0x86a0, /* 2-3: u32 100000, high word first */
		0x4148, 0x0000, /* 4-5: f32 12.5, high word first */
		0x7960, 0xfffe, /* 6-7: i32 -100000, low word first */
		10, 20, 30,     /* 8-10: three u16 */
	};
	static const uint16_t input[4] = {250, 0x8000};
	memcpy(map->tab_bits, coils, sizeof coils);
	memcpy(map->tab_input_bits, discrete, sizeof discrete);
	memcpy(map->tab_registers, holding, sizeof holding);
	memcpy(map->tab_input_registers, input, sizeof input);
	int s = modbus_tcp_listen(ctx, 1);
	struct sockaddr_in a;
	socklen_t al = sizeof a;
	if (s < 0 || getsockname(s, (struct sockaddr *)&a, &al)) {
		fprintf(stderr, "modbus server: cannot listen on port %s: %s\n",
			argv[1], modbus_strerror(errno));
		return 1;
	}
	printf("%d\n", ntohs(a.sin_port));
	fflush(stdout);
	uint8_t q[MODBUS_TCP_MAX_ADU_LENGTH];
	for (;;) {
		if (modbus_tcp_accept(ctx, &s) < 0)
			continue;
		for (;;) {
			int n = modbus_receive(ctx, q);
			if (n > 0)
				modbus_reply(ctx, q, n, map);
			else if (n < 0)
				break; /* the client went away */
		}
		modbus_close(ctx); /* the client's socket; s still listens */
	}
}
