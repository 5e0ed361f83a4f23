// AudioWorklet processor: posts each render quantum of the input, downmixed to mono, as a Float32Array.
class PcmRecorder extends AudioWorkletProcessor {
  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length > 0) {
      const mono = new Float32Array(channels[0].length);
      for (const channel of channels) {
        for (let i = 0; i < mono.length; i++) {
          mono[i] += channel[i] / channels.length;
        }
      }
      this.port.postMessage(mono, [mono.buffer]);
    }
    return true;
  }
}

registerProcessor("pcm-recorder", PcmRecorder);
