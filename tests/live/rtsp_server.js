// Test RTSP relay: publish (ANNOUNCE/RECORD) on argv[2], play on argv[3], RTP/UDP ports from argv[4].
// Uses the npm package rtsp-streaming-server (installed by .ci/install-rtsp-server.sh).
const path = process.env.RTSP_SERVER_MODULES || '/opt/rtsp-server/node_modules';
const RtspServer = require(path + '/rtsp-streaming-server').default;
const server = new RtspServer({
  serverPort: parseInt(process.argv[2]), clientPort: parseInt(process.argv[3]),
  rtpPortStart: parseInt(process.argv[4]), rtpPortCount: 200,
});
server.start().then(() => console.log('ready')).catch((e) => { console.error(e); process.exit(1); });
process.on('SIGTERM', () => process.exit(0));
