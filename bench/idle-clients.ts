// Child of bench/ingest.ts: N idle MQTT connections (as many devices would hold), for measuring
// what a broker spends per connection.
import mqtt from 'mqtt';

const { url, count } = JSON.parse(process.argv[2] ?? '{}') as { url: string; count: number };
const clients: mqtt.MqttClient[] = [];
for (let i = 0; i < count; i += 200) {
  const batch = Array.from({ length: Math.min(200, count - i) }, (_, j) =>
    mqtt.connectAsync(url, { clientId: `idle-${i + j}`, protocolVersion: 4, keepalive: 60, reconnectPeriod: 0 }),
  );
  clients.push(...(await Promise.all(batch)));
}
for (const client of clients) client.on('error', () => {});
process.send?.({ type: 'connected', count: clients.length });
process.on('message', (message: { type: string }) => {
  if (message.type === 'stop') process.exit(0);
});
