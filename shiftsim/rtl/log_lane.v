// shiftsim reference RTL -- log-domain lane, base 2 (SPEC 5.2; Miyashita, Lee & Murmann 2016).
//
// One term per clock, in the order c, kh, kw. A term whose activation or weight is zero
// (sign 0; padding included) changes nothing.
//
// Exponent adder:   p = e_x + e_w,  sign = s_x * s_w
// LOGACC = 0, linear accumulation (accumulator FixedFormat(ACC_BITS, F), WRAP/SAT):
//     acc = bias;  per term: acc = OVERFLOW(acc +- floor(2^(p+F)))    (0 when p + F < 0)
// LOGACC = 1, log-domain accumulation (log2(1+x) ~ x), registers S_pos, S_neg with G
// fractional bits, empty at the first term:
//     first term:      S = p * 2^G
//     MITCHELL = 0:    d = |floor(S / 2^G) - p|;  S = max(S, p*2^G) + (2^G >> d)
//     MITCHELL = 1:    D = |S - p*2^G|, i = D >> G, phi = D mod 2^G
//                      S = max(S, p*2^G) + ((2^(G+1) - phi) >> (i+1))
//     output:          lin(S) = floor(2^I * (1 + phi) * 2^F), S = (I + phi) * 2^G (Mitchell),
//                      each fitted to ACC_BITS; y = OVERFLOW(bias + lin(S_pos) - lin(S_neg)),
//                      an empty register gives 0.
// Signs are 2-bit two's complement: -1 = 2'b11, 0 = 2'b00, +1 = 2'b01.
module log_lane #(
    parameter integer EBITS    = 5,    // exponent width (two's complement)
    parameter integer F        = 16,   // fractional bits of the linear output
    parameter integer ACC_BITS = 32,
    parameter integer SAT      = 0,
    parameter integer LOGACC   = 0,    // 0: linear accumulation, 1: log-domain
    parameter integer MITCHELL = 0,    // log-domain merge: 0 floor, 1 mitchell
    parameter integer G        = 4,    // fractional bits of the log registers
    parameter integer SBITS    = 16    // log register width (holds p*2^G plus growth)
) (
    input  wire                clk,
    input  wire                en,
    input  wire                first,
    input  wire [ACC_BITS-1:0] bias,
    input  wire [EBITS-1:0]    xe,
    input  wire [1:0]          xsign,
    input  wire [EBITS-1:0]    we,
    input  wire [1:0]          wsign,
    output wire [EBITS:0]      p,
    output wire [ACC_BITS-1:0] acc,
    output wire                ovf,
    output reg  [SBITS-1:0]    s_pos,
    output reg  [SBITS-1:0]    s_neg,
    output reg                 pos_full,
    output reg                 neg_full,
    output wire [ACC_BITS-1:0] y,
    output wire                ovf_any
);
    localparam integer LW = ACC_BITS + G + 2;                    // lin(S) before fitting
    localparam [LW-1:0] MAXL = {{(G+3){1'b0}}, {(ACC_BITS-1){1'b1}}};

    // exponent adder and product sign
    wire signed [EBITS:0] ps    = $signed(xe) + $signed(we);
    assign p = ps;
    wire                  valid = (xsign != 2'b00) && (wsign != 2'b00);
    wire                  neg   = xsign[1] ^ wsign[1];

    // ---- linear accumulation: +-floor(2^(p+F)), a 1 shifted left (clamped at 2^ACC_BITS:
    // beyond it the register overflows either way and its low bits are unchanged)
    wire signed [31:0]       e   = ps + F;
    wire        [31:0]       shc = (e > ACC_BITS) ? ACC_BITS : e;
    wire        [ACC_BITS+1:0] mag = {{(ACC_BITS+1){1'b0}}, 1'b1} << shc;
    wire signed [ACC_BITS+1:0] din = (!valid || e < 0) ? {(ACC_BITS+2){1'b0}}
                                   : (neg ? -$signed(mag) : $signed(mag));
    wire ovf_any_lin;
    accumulator #(.ACC_BITS(ACC_BITS), .IN_BITS(ACC_BITS + 2), .SAT(SAT)) u_acc (
        .clk(clk), .en(en), .first(first), .bias(bias), .din(din),
        .acc(acc), .ovf(ovf), .ovf_any(ovf_any_lin));

    // ---- log-domain accumulation
    wire signed [SBITS-1:0] big_p = ps <<< G;                   // p * 2^G
    wire signed [SBITS-1:0] s_cur = neg ? s_neg : s_pos;
    wire                    full  = first ? 1'b0 : (neg ? neg_full : pos_full);
    wire signed [SBITS-1:0] s_max = (s_cur > big_p) ? s_cur : big_p;
    wire signed [SBITS:0]   diff  = $signed(s_cur) - $signed(big_p);
    wire        [SBITS:0]   dabs  = diff[SBITS] ? -diff : diff;
    wire signed [SBITS-1:0] i_s   = s_cur >>> G;                 // floor(S / 2^G)
    wire signed [SBITS:0]   di    = $signed(i_s) - $signed(ps);
    wire        [SBITS:0]   d     = di[SBITS] ? -di : di;        // floor mode's |floor(S) - p|
    wire        [G+1:0]     one   = {{(G+1){1'b0}}, 1'b1} << G;  // 2^G
    wire        [G+1:0]     phi_d = (dabs & ((1 << G) - 1));
    wire        [SBITS:0]   i_d   = dabs >> G;
    wire        [G+1:0]     inc   = (MITCHELL != 0) ? (((one << 1) - phi_d) >> (i_d + 1))
                                                    : (one >> d);
    wire signed [SBITS-1:0] s_new = full ? s_max + $signed({1'b0, inc}) : big_p;

    always @(posedge clk) begin
        if (en) begin
            if (first) begin
                s_pos <= {SBITS{1'b0}}; s_neg <= {SBITS{1'b0}};
                pos_full <= 1'b0; neg_full <= 1'b0;
            end
            if (valid && LOGACC != 0) begin
                if (neg) begin s_neg <= s_new; neg_full <= 1'b1; end
                else     begin s_pos <= s_new; pos_full <= 1'b1; end
            end
        end
    end

    // ---- log -> linear (Mitchell), fitted to ACC_BITS
    function [LW:0] to_linear;   // {overflow, fitted value in the low ACC_BITS bits}
        input signed [SBITS-1:0] s;
        input                    full_r;
        reg          [G:0]       m;
        reg signed   [31:0]      sh;
        reg          [LW-1:0]    wide;
        reg                      over;
        begin
            m    = (1 << G) | (s & ((1 << G) - 1));                // 2^G + phi
            sh   = (s >>> G) + F - G;                             // I + F - G
            if (sh >= 0) wide = {{(LW-G-1){1'b0}}, m} << ((sh > ACC_BITS) ? ACC_BITS : sh);
            else         wide = {{(LW-G-1){1'b0}}, m} >> ((-sh > G + 2) ? G + 2 : -sh);
            over = full_r && (sh > ACC_BITS || wide > MAXL);
            if (!full_r)               to_linear = {(LW+1){1'b0}};
            else if (over && SAT != 0) to_linear = {1'b1, MAXL};
            else                       to_linear = {over, {(LW-ACC_BITS){1'b0}}, wide[ACC_BITS-1:0]};
        end
    endfunction

    wire [LW:0] lp = to_linear(s_pos, pos_full);
    wire [LW:0] ln = to_linear(s_neg, neg_full);
    wire signed [ACC_BITS+2:0] yexact = $signed(bias) + $signed(lp[ACC_BITS-1:0])
                                      - $signed(ln[ACC_BITS-1:0]);
    wire                    yhi = yexact > $signed({3'b000, {(ACC_BITS-1){1'b1}}});
    wire                    ylo = yexact < $signed({3'b111, {(ACC_BITS-1){1'b0}}});
    wire [ACC_BITS-1:0]     ylog = (SAT != 0 && yhi) ? {1'b0, {(ACC_BITS-1){1'b1}}}
                                 : (SAT != 0 && ylo) ? {1'b1, {(ACC_BITS-1){1'b0}}}
                                 : yexact[ACC_BITS-1:0];
    assign y       = (LOGACC != 0) ? ylog : acc;
    assign ovf_any = (LOGACC != 0) ? (lp[LW] | ln[LW] | yhi | ylo) : ovf_any_lin;
endmodule
