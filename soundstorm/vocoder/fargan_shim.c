/* soundstorm's bridge to Opus 1.5's LPCNet feature analysis and FARGAN vocoder (BSD, Xiph.Org / Amazon).
 *
 * Whole-signal calls with no state kept between them, so Python drives them through ctypes with numpy
 * arrays: every call builds its own encoder or vocoder state on the heap, so calls from several threads
 * never share one. Built at setup with the few Opus files it needs (soundstorm/vocoder/build.py);
 * no Opus source is kept in this repository.
 *
 * Features: per 10 ms frame (160 samples at 16 kHz), NB_FEATURES = 20 floats: 18 cepstral coefficients,
 * the pitch (PitchDNN's log-period code) and the pitch correlation.
 */
#include <stdlib.h>
#include <string.h>
#include "lpcnet.h"
#include "fargan.h"

#define SS_FRAME 160

int ss_num_features(void) { return NB_FEATURES; }
int ss_frame_size(void) { return SS_FRAME; }
int ss_prime_frames(void) { return 5; }

/* pcm: n_frames * 160 samples at int16 scale (not clipped here); features: n_frames * 20 floats out. */
int ss_analyze(const float *pcm, int n_frames, float *features) {
  LPCNetEncState *enc;
  float all[NB_TOTAL_FEATURES];
  int i;
  if (n_frames < 0) return -1;
  enc = lpcnet_encoder_create();
  if (enc == NULL) return -2;
  for (i = 0; i < n_frames; i++) {
    lpcnet_compute_single_frame_features_float(enc, &pcm[i * SS_FRAME], all, 0);
    memcpy(&features[i * NB_FEATURES], all, NB_FEATURES * sizeof(float));
  }
  lpcnet_encoder_destroy(enc);
  return 0;
}

/* FARGAN primes its state on 5 frames of features and the 320 samples before them (`fargan_cont`), then
 * renders one frame of 160 samples per further frame of features. features: n_frames * 20 floats,
 * n_frames >= 5; pcm: (n_frames - 5) * 160 samples out, in [-1, 1]. */
int ss_synthesize(const float *features, int n_frames, float *pcm) {
  FARGANState *st;
  float zeros[FARGAN_CONT_SAMPLES];
  int i;
  if (n_frames < 5) return -1;
  st = (FARGANState *)malloc(sizeof(FARGANState));
  if (st == NULL) return -2;
  memset(zeros, 0, sizeof(zeros));
  fargan_init(st);
  fargan_cont(st, zeros, features);
  for (i = 5; i < n_frames; i++) {
    fargan_synthesize(st, &pcm[(i - 5) * SS_FRAME], &features[i * NB_FEATURES]);
  }
  free(st);
  return 0;
}
